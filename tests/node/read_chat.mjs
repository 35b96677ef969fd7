// Sends one turn to the app's POST /api/chat with the Vercel AI SDK's own chat transport and rebuilds the
// assistant message with the SDK's own stream reader, as an AI SDK front-end would. Prints the final
// UIMessage as JSON on stdout; exits non-zero on any error the SDK reports.
// Usage: node read_chat.mjs <api url> <bearer token> <chat id> <text> [model]
import { DefaultChatTransport, readUIMessageStream } from "ai";

const [api, token, chatId, text, model] = process.argv.slice(2);
const transport = new DefaultChatTransport({
  api,
  headers: { Authorization: `Bearer ${token}` },
  body: model ? { model } : {},
});
const errors = [];
const stream = await transport.sendMessages({
  trigger: "submit-message",
  chatId,
  messageId: undefined,
  messages: [{ id: "user-1", role: "user", parts: [{ type: "text", text }] }],
  abortSignal: undefined,
});
let message;
for await (const partial of readUIMessageStream({ stream, onError: (e) => errors.push(String(e)), terminateOnError: true })) {
  message = partial;
}
if (errors.length) {
  console.error(errors.join("\n"));
  process.exit(2);
}
console.log(JSON.stringify(message));
