// The Node clients that call POST /v1/responses, driven against the gateway by tests/test_node_clients.py.
//
//   node clients.mjs <base_url> <model> <scenario>...
//
// Scenarios: generate, stream, tools, stream-tools (the Vercel AI SDK's default `openai(model)`,
// which speaks the Responses API), langchain (@langchain/openai with useResponsesApi: true).
// Prints one JSON object: each scenario's result, or {"error": message}.
import { createOpenAI } from "@ai-sdk/openai";
import { ChatOpenAI } from "@langchain/openai";
import { generateText, stepCountIs, streamText, tool } from "ai";
import { z } from "zod";

const [baseURL, model, ...scenarios] = process.argv.slice(2);
const apiKey = "sk-client-key-never-forwarded";
const openai = createOpenAI({ baseURL, apiKey });

const weather = tool({
  description: "The weather in a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, temperature: 21 }),
});

function usageOf(usage) {
  return { inputTokens: usage.inputTokens, outputTokens: usage.outputTokens, totalTokens: usage.totalTokens };
}

const run = {
  async generate() {
    const result = await generateText({ model: openai(model), prompt: "Say hello", maxOutputTokens: 200, maxRetries: 0 });
    return { text: result.text, finishReason: result.finishReason, usage: usageOf(result.usage) };
  },
  async stream() {
    const result = streamText({ model: openai(model), prompt: "Say hello", maxRetries: 0, onError: () => {} });
    let text = "";
    for await (const piece of result.textStream) text += piece;
    return { text, finishReason: await result.finishReason, usage: usageOf(await result.usage) };
  },
  async tools() {
    const result = await generateText({
      model: openai(model),
      prompt: "What is the weather in Paris?",
      tools: { weather },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
    });
    const calls = result.steps.flatMap((step) => step.toolCalls.map((call) => ({ name: call.toolName, input: call.input })));
    return { text: result.text, steps: result.steps.length, calls, usage: usageOf(result.totalUsage) };
  },
  async "stream-tools"() {
    const result = streamText({
      model: openai(model),
      prompt: "What is the weather in Paris?",
      tools: { weather },
      stopWhen: stepCountIs(3),
      maxRetries: 0,
      onError: () => {},
    });
    let text = "";
    const calls = [];
    for await (const part of result.fullStream) {
      if (part.type === "text-delta") text += part.text;
      if (part.type === "tool-call") calls.push({ name: part.toolName, input: part.input });
      if (part.type === "error") throw part.error;
    }
    return { text, steps: (await result.steps).length, calls, usage: usageOf(await result.totalUsage) };
  },
  async langchain() {
    const llm = new ChatOpenAI({ model, apiKey, useResponsesApi: true, maxRetries: 0, configuration: { baseURL } });
    const message = await llm.invoke("Say hello");
    let streamed = "";
    for await (const chunk of await llm.stream("Say hello")) streamed += chunk.text;
    return { text: message.text, streamed, usage: message.usage_metadata };
  },
};

const results = {};
for (const name of scenarios) {
  try {
    results[name] = await run[name]();
  } catch (error) {
    results[name] = { error: String(error?.message ?? error) };
  }
}
process.stdout.write(JSON.stringify(results));
