// HPACK Huffman decoding (RFC 7541 §5.2, Appendix B). The code is canonical, so the table is kept as
// one code length per symbol (0-255 and EOS = 256); codes are rebuilt from the lengths at load.
// Servers Huffman-code header values such as content-type, so the DoH client needs this to read them.

// Appendix B code lengths, symbol by symbol, as 'A' + (length - 5).
const LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';

const EOS = 256;
const MAX_LEN = 30;

/** Per code length L: the first canonical code of that length, how many there are, and where their
 *  symbols start in `symbols` (sorted by length, then symbol). */
const firstCode = new Int32Array(MAX_LEN + 1);
const countOf = new Int32Array(MAX_LEN + 1);
const offsetOf = new Int32Array(MAX_LEN + 1);
const symbols = new Int32Array(257);

(function build() {
  const len = (s: number): number => LENGTHS.charCodeAt(s) - 65 + 5;
  for (let s = 0; s <= EOS; s++) countOf[len(s)]++;
  let code = 0;
  let offset = 0;
  for (let l = 1; l <= MAX_LEN; l++) {
    firstCode[l] = code;
    offsetOf[l] = offset;
    offset += countOf[l];
    code = (code + countOf[l]) << 1;
  }
  const fill = new Int32Array(MAX_LEN + 1);
  for (let l = 1; l <= MAX_LEN; l++) {
    for (let s = 0; s <= EOS; s++) if (len(s) === l) symbols[offsetOf[l] + fill[l]++] = s;
  }
})();

let lastRaw: Buffer | null = null;
let lastDecoded: string | null = null;

/** Decodes a Huffman-coded string; null when it is malformed (bad padding, EOS inside). */
export function huffmanDecode(raw: Buffer): string | null {
  return huffmanDecodeRange(raw, 0, raw.length);
}

/** huffmanDecode() of buf[start, end). */
export function huffmanDecodeRange(buf: Buffer, start: number, end: number): string | null {
  // Responses repeat the same few values (content-type): a one-entry memo, compared in JS because the
  // strings are a few bytes long, skips the bit loop for them.
  const memo = lastRaw;
  if (memo !== null && memo.length === end - start) {
    let k = 0;
    while (k < memo.length && memo[k] === buf[start + k]) k++;
    if (k === memo.length) return lastDecoded;
  }
  const out: number[] = [];
  let code = 0;
  let len = 0;
  for (let i = start; i < end; i++) {
    const byte = buf[i];
    for (let bit = 7; bit >= 0; bit--) {
      code = (code << 1) | ((byte >> bit) & 1);
      len++;
      const rel = code - firstCode[len];
      if (len >= 5 && rel >= 0 && rel < countOf[len]) {
        const sym = symbols[offsetOf[len] + rel];
        if (sym === EOS) return null;
        out.push(sym);
        code = 0;
        len = 0;
      } else if (len === MAX_LEN) return null;
    }
  }
  // Padding: fewer than 8 bits, all ones (a prefix of EOS).
  if (len >= 8 || code !== (1 << len) - 1) return null;
  const decoded = String.fromCharCode(...out);
  lastRaw = Buffer.from(buf.subarray(start, end));
  lastDecoded = decoded;
  return decoded;
}
