/**
 * What every tokenizer in mynah provides (byte-level BPE, tiktoken vocabularies, and the
 * character-level tokenizer used for tiny plain-text experiments).
 */
export interface StreamDecoder {
  /** Feed one token id; returns the text that is now complete (never half a UTF-8 character). */
  push(id: number): string;
  /** Whatever is still buffered (incomplete bytes become U+FFFD). */
  flush(): string;
}

/**
 * A model's own chat format, from the tokenizer_config.json beside its tokenizer.json: the
 * Jinja `chat_template` and the special tokens the template refers to. The one chat-template
 * function (src/data/chat-template.ts) renders with it when it is not mynah's ChatML.
 */
export interface ChatFormat {
  template: string;
  bosToken?: string;
  eosToken?: string;
  padToken?: string;
}

export interface Tokenizer {
  /** Number of ids, special tokens included: ids are in [0, vocabSize). */
  readonly vocabSize: number;
  /** Special tokens by text, e.g. "<|endoftext|>" → id. */
  readonly special: ReadonlyMap<string, number>;
  /**
   * Text → ids. Special-token text is encoded as ordinary text unless listed in
   * allowedSpecial ("all" allows every special token).
   */
  encode(text: string, opts?: { allowedSpecial?: "all" | ReadonlySet<string> }): number[];
  /** Ids → text (invalid UTF-8 becomes U+FFFD). */
  decode(ids: ArrayLike<number>): string;
  /** Ids → raw bytes. */
  decodeBytes(ids: ArrayLike<number>): Uint8Array;
  streamDecoder(): StreamDecoder;
  /** The chat format of tokenizer_config.json, when the folder has one with a chat_template. */
  readonly chat?: ChatFormat;
}
