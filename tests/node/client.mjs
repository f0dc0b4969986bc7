// The Vercel AI SDK's OpenAI provider (chat completions) reading a gateway's answer, whole and streamed.
// Usage: node client.mjs BASE_URL MODEL; prints one JSON line: {whole, streamed}, each {text, finishReason, usage}.
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, streamText } from "ai";

const [baseURL, model] = process.argv.slice(2);
const openai = createOpenAI({ baseURL, apiKey: "unused-by-the-test-gateway" });
const prompt = "What is the capital of France?";

const whole = await generateText({ model: openai.chat(model), prompt, maxRetries: 0 });
const errors = [];
const streamed = streamText({ model: openai.chat(model), prompt, maxRetries: 0, onError: ({ error }) => errors.push(String(error)) });
let text = "";
for await (const part of streamed.textStream) text += part;
console.log(
  JSON.stringify({
    whole: { text: whole.text, finishReason: whole.finishReason, usage: whole.usage },
    streamed: { text, finishReason: await streamed.finishReason, usage: await streamed.usage, errors },
  }),
);
