// Docker's word rules for the instructions it expands itself (ENV, ARG, LABEL, COPY, ADD, WORKDIR, USER,
// EXPOSE, FROM): quotes, the escape character, and `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:+alt}`
// (with `-`/`+` without the colon too). RUN, CMD and ENTRYPOINT are left to the guest's shell, as Docker does.

export type Lookup = (name: string) => string | undefined;

/** Why a word cannot be expanded (the caller adds the line). */
export class WordError extends Error {}

/** Splits on unquoted blanks, keeping quotes and escapes in each word for expandWord. */
export function splitWords(text: string, escapeChar: string): string[] {
  const words: string[] = [];
  let current = "";
  let inWord = false;
  let quote: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quote === undefined && /\s/.test(c)) {
      if (inWord) words.push(current);
      current = "";
      inWord = false;
      continue;
    }
    inWord = true;
    current += c;
    if (c === escapeChar && quote !== "'" && i + 1 < text.length) {
      current += text[++i] as string;
    } else if (quote === undefined && (c === '"' || c === "'")) quote = c;
    else if (c === quote) quote = undefined;
  }
  if (quote !== undefined) throw new WordError(`Unterminated quote ${quote} in ${JSON.stringify(text)}`);
  if (inWord) words.push(current);
  return words;
}

/** Removes quotes and escapes and substitutes variables, as Docker's shell-word processing does. */
export function expandWord(word: string, lookup: Lookup, escapeChar: string): string {
  let out = "";
  let quote: string | undefined;
  for (let i = 0; i < word.length; i++) {
    const c = word[i] as string;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else out += c;
      continue;
    }
    if (c === escapeChar && i + 1 < word.length) {
      const next = word[i + 1] as string;
      // Inside double quotes the escape only escapes what is special there; elsewhere it stays as written.
      if (quote === '"' && !['"', escapeChar, "$"].includes(next)) {
        out += c;
        continue;
      }
      out += next;
      i++;
      continue;
    }
    if (quote === undefined && (c === '"' || c === "'")) {
      quote = c;
      continue;
    }
    if (c === '"' && quote === '"') {
      quote = undefined;
      continue;
    }
    if (c === "$") {
      const { value, end } = substitute(word, i, lookup, escapeChar);
      out += value;
      i = end;
      continue;
    }
    out += c;
  }
  if (quote !== undefined) throw new WordError(`Unterminated quote ${quote} in ${JSON.stringify(word)}`);
  return out;
}

const NAME_START = /[A-Za-z_]/;
const NAME_CHAR = /[A-Za-z0-9_]/;

/** The variable reference starting at `start` (a "$"): its value and the index of its last character. */
function substitute(word: string, start: number, lookup: Lookup, escapeChar: string): { value: string; end: number } {
  const next = word[start + 1];
  if (next === "{") {
    const close = findClose(word, start + 2, escapeChar);
    if (close < 0) throw new WordError(`Missing "}" in ${JSON.stringify(word)}`);
    const body = word.slice(start + 2, close);
    const match = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?$/s.exec(body);
    if (!match) throw new WordError(`Unsupported substitution \${${body}} in ${JSON.stringify(word)} (supported: \${VAR}, \${VAR:-default}, \${VAR:+alternative})`);
    const [, name = "", operator, operand = ""] = match;
    const value = lookup(name);
    const set = operator?.startsWith(":") ? value !== undefined && value !== "" : value !== undefined;
    if (operator === undefined) return { value: value ?? "", end: close };
    const word2 = expandWord(operand, lookup, escapeChar);
    if (operator.endsWith("-")) return { value: set ? (value as string) : word2, end: close };
    return { value: set ? word2 : "", end: close };
  }
  if (next !== undefined && NAME_START.test(next)) {
    let end = start + 1;
    while (end + 1 < word.length && NAME_CHAR.test(word[end + 1] as string)) end++;
    return { value: lookup(word.slice(start + 1, end + 1)) ?? "", end };
  }
  return { value: "$", end: start };
}

function findClose(word: string, from: number, escapeChar: string): number {
  let depth = 1;
  for (let i = from; i < word.length; i++) {
    const c = word[i];
    if (c === escapeChar) i++;
    else if (c === "{") depth++;
    else if (c === "}" && --depth === 0) return i;
  }
  return -1;
}
