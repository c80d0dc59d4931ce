// Reads an NDJSON response body as objects, one per line, as the lines arrive.

export async function* ndjson<T>(body: AsyncIterable<Buffer | string>): AsyncGenerator<T> {
  let pending = "";
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    pending += typeof chunk === "string" ? chunk : decoder.decode(chunk, { stream: true });
    let end = pending.indexOf("\n");
    while (end >= 0) {
      const line = pending.slice(0, end);
      pending = pending.slice(end + 1);
      if (line.trim()) yield JSON.parse(line) as T;
      end = pending.indexOf("\n");
    }
  }
  pending += decoder.decode();
  if (pending.trim()) yield JSON.parse(pending) as T;
}
