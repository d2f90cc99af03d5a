// Threads through the official JS SDK against a running lg-deploy (LG_URL, LG_API_KEY).
// Run by tests/test_threads_js.py; exits non-zero on the first failed assertion.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.LG_URL, apiKey: process.env.LG_API_KEY });

const chosen = randomUUID();
const first = await client.threads.create({ threadId: chosen, metadata: { user: "ann" } });
assert.equal(first.thread_id, chosen);
assert.equal(first.status, "idle");
assert.deepEqual(first.metadata, { user: "ann" });

const again = await client.threads.create({ threadId: chosen, ifExists: "do_nothing" });
assert.deepEqual(again, first);
await assert.rejects(client.threads.create({ threadId: chosen }), /409/);

const graph = await client.threads.create({ graphId: "echo" });
assert.deepEqual(graph.metadata, { graph_id: "echo" });
assert.deepEqual(await client.threads.get(chosen), first);

const updated = await client.threads.update(chosen, { metadata: { topic: "tax" } });
assert.deepEqual(updated.metadata, { user: "ann", topic: "tax" });

const mine = await client.threads.search({ metadata: { user: "ann" } });
assert.deepEqual(mine.map((t) => t.thread_id), [chosen]);
const oldest = await client.threads.search({ limit: 1, sortBy: "created_at", sortOrder: "asc" });
assert.deepEqual(oldest.map((t) => t.thread_id), [chosen]);
const picked = await client.threads.search({ ids: [graph.thread_id], select: ["thread_id"] });
assert.deepEqual(picked, [{ thread_id: graph.thread_id }]);

assert.equal(await client.threads.count(), 2);
assert.equal(await client.threads.count({ metadata: { graph_id: "echo" } }), 1);
assert.equal(await client.threads.count({ status: "busy" }), 0);

const spare = await client.threads.create();
assert.deepEqual(await client.threads.prune([spare.thread_id, randomUUID()]), { pruned_count: 1 });
await assert.rejects(client.threads.prune([chosen], { strategy: "keep_latest" }), /422/);

await client.threads.delete(chosen);
await assert.rejects(client.threads.get(chosen), /404/);
await assert.rejects(client.threads.delete(chosen), /404/);
console.log("threads: all assertions held");
