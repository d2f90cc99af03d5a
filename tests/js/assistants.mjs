// Assistants through the official JS SDK against a running lg-deploy (LG_URL, LG_API_KEY):
// create, get, update into versions, set latest, search, count, the graph, schemas, subgraphs,
// a run with the assistant's context, delete. Run by tests/test_assistants_js.py; exits non-zero
// on the first failed assertion.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { Client } from "@langchain/langgraph-sdk";

const client = new Client({ apiUrl: process.env.LG_URL, apiKey: process.env.LG_API_KEY });

// Create: the id given, version 1; do_nothing answers the one holding it, raise a 409.
const chosen = randomUUID();
const made = await client.assistants.create({
  graphId: "chat",
  assistantId: chosen,
  context: { user: "ann" },
  metadata: { team: "blue" },
  name: "Ann's chat",
  description: "talks to ann",
});
assert.equal(made.assistant_id, chosen);
assert.equal(made.version, 1);
assert.deepEqual(made.context, { user: "ann" });
assert.deepEqual(
  await client.assistants.create({ graphId: "echo", assistantId: chosen, ifExists: "do_nothing" }),
  made,
);
await assert.rejects(client.assistants.create({ graphId: "echo", assistantId: chosen }), /409/);
await assert.rejects(client.assistants.create({ graphId: "nope" }), /422/);
assert.deepEqual(await client.assistants.get(chosen), made);

// Update: each a new version, made current; metadata merged. setLatest goes back.
const second = await client.assistants.update(chosen, {
  metadata: { size: "big" },
  name: "Ann's talk",
});
assert.equal(second.version, 2);
assert.deepEqual(second.metadata, { team: "blue", size: "big" });
const third = await client.assistants.update(chosen, { context: { user: "bob" } });
assert.equal(third.version, 3);
const versions = await client.assistants.getVersions(chosen);
assert.deepEqual(versions.map((v) => v.version), [3, 2, 1]);
const oldest = await client.assistants.getVersions(chosen, { limit: 1, offset: 2 });
assert.deepEqual(oldest.map((v) => v.version), [1]);
const back = await client.assistants.setLatest(chosen, 1);
assert.equal(back.version, 1);
assert.equal(back.name, "Ann's chat");
assert.deepEqual(back.context, { user: "ann" });
await assert.rejects(client.assistants.setLatest(chosen, 9), /404/);

// The system assistants stay: searchable, usable, unchangeable.
const systems = await client.assistants.search({ metadata: { created_by: "system" }, limit: 100 });
assert.ok(systems.some((a) => a.graph_id === "chat" && a.name === "chat"), JSON.stringify(systems));
await assert.rejects(client.assistants.update("chat", { name: "mine" }), /409/);
await assert.rejects(client.assistants.delete("chat"), /409/);
const chats = await client.assistants.search({ graphId: "chat" });
assert.deepEqual(chats.map((a) => a.assistant_id)[0], chosen);
assert.equal(chats.length, 2);
const named = await client.assistants.search({ name: "ann", select: ["assistant_id", "name"] });
assert.deepEqual(named, [{ assistant_id: chosen, name: "Ann's chat" }]);
const page = await client.assistants.search({ limit: 2, includePagination: true });
assert.equal(page.assistants.length, 2);
assert.equal(page.next, "2");
const total = await client.assistants.count();
assert.equal(total, systems.length + 1);
assert.equal(await client.assistants.count({ graphId: "chat" }), 2);
assert.equal(await client.assistants.count({ metadata: { team: "blue" } }), 1);

// The graph: drawn flat and with xray; schemas; subgraphs (recurse: nested ones too).
const reviewer = await client.assistants.create({ graphId: "review", context: { editor: "eve" } });
const flat = await client.assistants.getGraph(reviewer.assistant_id);
const drawn = new Set(flat.nodes.map((n) => n.id));
assert.deepEqual(drawn, new Set(["__start__", "review", "publish", "__end__"]));
const xray = await client.assistants.getGraph(reviewer.assistant_id, { xray: true });
assert.ok(xray.nodes.some((n) => n.id === "review:spell:spell"), JSON.stringify(xray.nodes));
const schemas = await client.assistants.getSchemas(reviewer.assistant_id);
assert.equal(schemas.graph_id, "review");
assert.deepEqual(schemas.input_schema.required, ["text"]);
assert.deepEqual(Object.keys(schemas.context_schema.properties), ["editor"]);
const subgraphs = await client.assistants.getSubgraphs(reviewer.assistant_id);
assert.deepEqual(Object.keys(subgraphs), ["review"]);
const nested = await client.assistants.getSubgraphs(reviewer.assistant_id, { recurse: true });
assert.deepEqual(Object.keys(nested), ["review", "review|spell"]);
const one = await client.assistants.getSubgraphs(reviewer.assistant_id, { namespace: "review" });
assert.deepEqual(Object.keys(one), ["review"]);

// Runs: the assistant's context reaches the graph, under the run's own; the run names it.
const reviewed = await client.runs.wait(null, reviewer.assistant_id, {
  input: { text: "fine text" },
});
assert.equal(reviewed.published, "fine text (checked by eve)");
const own = await client.runs.wait(null, reviewer.assistant_id, {
  input: { text: "mine" },
  context: { editor: "max" },
});
assert.equal(own.published, "mine (checked by max)");
const thread = (await client.threads.create()).thread_id;
const talked = await client.runs.wait(thread, chosen, { input: { message: "hi" } });
assert.deepEqual(talked.replies, ["turn 1 for ann: hi"]);
const [run] = await client.runs.list(thread);
assert.equal(run.assistant_id, chosen);
assert.equal((await client.threads.get(thread)).metadata.assistant_id, chosen);

// Delete: 204, then 404; its runs stay readable.
await client.assistants.delete(reviewer.assistant_id);
await assert.rejects(client.assistants.get(reviewer.assistant_id), /404/);
await assert.rejects(client.assistants.delete(reviewer.assistant_id), /404/);
assert.equal((await client.runs.get(thread, run.run_id)).assistant_id, chosen);
console.log("assistants: all assertions held");
