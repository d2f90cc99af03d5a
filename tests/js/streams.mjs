// Streams through the official JS SDK against a running lg-deploy (LG_URL, LG_API_KEY): a run
// on a thread streamed as it is created, the same run joined again from its first event, and a
// thread-less run streamed and joined. Run by tests/test_streams_js.py, which checks the events;
// prints them as one JSON line.
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.LG_URL, apiKey: process.env.LG_API_KEY });

// Every part of an SDK stream, as {event, data, id}.
async function collect(parts) {
  const seen = [];
  for await (const part of parts) {
    seen.push({ event: part.event, data: part.data, id: part.id ?? null });
  }
  return seen;
}

const thread = (await client.threads.create()).thread_id;
const streamed = await collect(
  client.runs.stream(thread, "tokens", {
    input: { prompt: "hello there friend" },
    streamMode: ["values", "messages-tuple", "custom", "updates"],
  }),
);
const runId = streamed[0]?.data?.run_id;
const joined = await collect(client.runs.joinStream(thread, runId, { lastEventId: "-1" }));

const alone = await collect(client.runs.stream(null, "echo", { input: { hello: "world" } }));
const aloneId = alone[0]?.data?.run_id;
const aloneJoined = await collect(client.runs.joinStream(null, aloneId, { lastEventId: "-1" }));

console.log(JSON.stringify({ thread, streamed, joined, alone, aloneJoined }));
