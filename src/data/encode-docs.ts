/**
 * Documents → token ids, as they go into shards: <|endoftext|> then the text's ids, or the
 * conversation rendered by the chat template. Shared by the in-process path and the workers.
 */
import type { Tokenizer } from "../tokenizer/types.ts";
import { renderChat } from "./chat-template.ts";
import type { DocBody } from "./records.ts";

export const EOT = "<|endoftext|>";

export function eotId(tok: Tokenizer): number {
  const id = tok.special.get(EOT);
  if (id === undefined) throw new Error(`the tokenizer has no ${EOT} special token (needed between documents)`);
  return id;
}

/** Ids of documents, concatenated (`ids`), with each document's length (`lens`). */
export function encodeDocs(tok: Tokenizer, docs: readonly DocBody[]): { ids: Uint32Array; lens: Uint32Array } {
  const eot = eotId(tok);
  const parts: number[][] = [];
  const lens = new Uint32Array(docs.length);
  let n = 0;
  docs.forEach((d, i) => {
    // Special-token text inside a document stays ordinary text: data cannot forge a boundary.
    if (d.kind === "preference") throw new Error("encodeDocs: preference pairs are not pretraining documents");
    const body = d.kind === "text" ? tok.encode(d.text) : renderChat(tok, d.messages).ids;
    parts.push(body);
    lens[i] = body.length + 1;
    n += body.length + 1;
  });
  const ids = new Uint32Array(n);
  let o = 0;
  for (const p of parts) {
    ids[o++] = eot;
    ids.set(p, o);
    o += p.length;
  }
  return { ids, lens };
}
