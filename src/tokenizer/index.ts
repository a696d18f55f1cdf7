/**
 * mynah's tokenizers: byte-level BPE training, encode/decode, Hugging Face and tiktoken formats.
 *
 *   const tok = await trainBpeAsync(texts, { vocabSize: 32768 });   // files: data/train-tokenizer.ts
 *   saveTokenizer("out/tok", tok, { chatTemplate });
 *   const again = loadTokenizer("out/tok");        // or a .tiktoken file
 *   again.encode("<|im_start|>user", { allowedSpecial: "all" });
 *   again.special.get("<|im_end|>");
 */
export type { StreamDecoder, Tokenizer } from "./types.ts";
export { bpeTokenizer, type BpeSpec, type BpeTokenizer } from "./bpe.ts";
export { trainBpe, trainBpeAsync, trainBpeFromCounts, PieceCounter, DEFAULT_SPECIAL_TOKENS, type TrainOptions, type TrainProgress } from "./train.ts";
export { saveTokenizer, loadTokenizer, loadModelTokenizer, loadTokenizerConfig, type SaveOptions, type TokenizerConfig } from "./io.ts";
export { parseTiktokenFile, parseTiktokenJson, ranksToMerges, TIKTOKEN_ENCODINGS } from "./tiktoken.ts";
export { MYNAH_PATTERN, CL100K_PATTERN, O200K_PATTERN, GPT2_PATTERN, QWEN2_PATTERN, PATTERN_PRESETS, type PatternPreset } from "./pattern.ts";
export { encodeFile, encodeLargeText, encodeBatch, EncoderPool, type ParallelOptions } from "./parallel.ts";
export { BYTE_TO_CHAR, bytesToByteLevel, byteLevelToBytes } from "./bytes.ts";
