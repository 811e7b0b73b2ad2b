/**
 * The load client in its own process: it posts callbacks to the bridge and times their acks, and it
 * is the **anchor** of the CPU-per-message figure. Its event loop is lightly loaded, so an ack it
 * times is the bridge's, not the delay of a busy emulator in the parent process.
 *
 * Commands (IPC, answered with the same id):
 * - `callbacks` {url, requests, batch}: posts pre-signed callbacks, `batch` at a time (0: all at
 *   once); answers each one's ack time and the wall-clock time it was acked.
 * - `probe-start` {url, ratePerSecond, users} / `probe-stop`: one {@link PROBE_TEXT} callback from
 *   the next user every 1/rate s (open loop: a slow ack does not delay the next probe), signed
 *   when it is sent, until stopped; the stop answers every ack time.
 * - `anchor` {apiBase, appKey, appSecret, from, recipients, bodyCharacters, warmup, count,
 *   ratePerSecond, sockets}: what the bridge's NIM client does for one segment and nothing else: a
 *   `bot_stream` body of the given size, the form, a fresh Nonce + CheckSum, one POST to
 *   `msg/sendMsg.action` over keep-alive sockets, the JSON answer parsed. After `warmup` messages,
 *   `count` more at `ratePerSecond`; the CPU of those (process.cpuUsage: every thread) per message
 *   is the floor under the bridge's. undici's `Pool` when the package is installed, else `node:http`
 *   with a keep-alive Agent.
 */
import { randomUUID } from "node:crypto";
import { Agent, request as httpRequest } from "node:http";
import { apiCheckSum, createNonce } from "../src/nim/checksum.ts";
import { SEGMENT_OPTION, segmentBody } from "../src/reply/messages.ts";
import { PROBE_TEXT, type SignedRequest, signedTextCallback, sleep, wallClock } from "./common.ts";

interface Answer {
  status: number;
  text: string;
}

type Post = (path: string, headers: Record<string, string>, body: string) => Promise<Answer>;

/** A POST over node:http with a keep-alive agent: no fetch machinery in the client's own figures. */
function nodeHttpPoster(baseUrl: string, agent: Agent): Post {
  const base = new URL(baseUrl);
  const prefix = base.pathname.replace(/\/+$/, "");
  return (path, headers, body) =>
    new Promise<Answer>((resolve, reject) => {
      const outgoing = httpRequest(
        {
          host: base.hostname,
          port: base.port,
          path: `${prefix}${path}`,
          method: "POST",
          agent,
          headers: { ...headers, "content-length": Buffer.byteLength(body) },
        },
        (response) => {
          const chunks: Buffer[] = [];
          response.on("data", (chunk: Buffer) => chunks.push(chunk));
          response.on("end", () =>
            resolve({ status: response.statusCode ?? 0, text: Buffer.concat(chunks).toString() }),
          );
          response.on("error", reject);
        },
      );
      outgoing.on("error", reject);
      outgoing.setTimeout(30_000, () => outgoing.destroy(new Error("no answer within 30 s")));
      outgoing.end(body);
    });
}

/** The subset of undici's Pool used here (undici is optional: the package may not be installed). */
interface UndiciPool {
  request(options: { path: string; method: string; headers: Record<string, string>; body: string }): Promise<{
    statusCode: number;
    body: { text(): Promise<string> };
  }>;
  close(): Promise<void>;
}

async function undiciPoster(
  baseUrl: string,
  connections: number,
): Promise<{ post: Post; close(): Promise<void> } | undefined> {
  // A computed specifier: the type checker must not require a package that may be absent.
  const name = "undici";
  let module: { Pool: new (origin: string, options: { connections: number }) => UndiciPool };
  try {
    module = (await import(name)) as typeof module;
  } catch {
    return undefined;
  }
  const base = new URL(baseUrl);
  const prefix = base.pathname.replace(/\/+$/, "");
  const pool = new module.Pool(base.origin, { connections });
  return {
    post: async (path, headers, body) => {
      const response = await pool.request({ path: `${prefix}${path}`, method: "POST", headers, body });
      return { status: response.statusCode, text: await response.body.text() };
    },
    close: () => pool.close(),
  };
}

interface CallbacksCommand {
  url: string;
  requests: SignedRequest[];
  batch: number;
}

async function postCallbacks(command: CallbacksCommand) {
  const agent = new Agent({ keepAlive: true });
  const post = nodeHttpPoster(command.url, agent);
  const acks = new Array<number>(command.requests.length).fill(Number.NaN);
  const ackedAt = new Array<number>(command.requests.length).fill(Number.NaN);
  const statuses = new Array<number>(command.requests.length).fill(0);
  const batch = command.batch > 0 ? command.batch : command.requests.length;
  try {
    for (let start = 0; start < command.requests.length; start += batch) {
      await Promise.all(
        command.requests.slice(start, start + batch).map(async (signed, offset) => {
          const index = start + offset;
          const postedAt = wallClock();
          try {
            const answer = await post("/im/callback", signed.headers, signed.body);
            statuses[index] = answer.status;
          } catch {
            statuses[index] = 0;
          }
          ackedAt[index] = wallClock();
          acks[index] = ackedAt[index]! - postedAt;
        }),
      );
    }
  } finally {
    agent.destroy();
  }
  return { acks, ackedAt, statuses };
}

interface ProbeCommand {
  url: string;
  ratePerSecond: number;
  users: string[];
}

function startProbes(command: ProbeCommand) {
  const agent = new Agent({ keepAlive: true });
  const post = nodeHttpPoster(command.url, agent);
  const acks: number[] = [];
  const inFlight = new Set<Promise<void>>();
  let failed = 0;
  let stopped = false;
  const intervalMs = 1000 / Math.max(0.001, command.ratePerSecond);
  const loop = (async () => {
    const startedAt = wallClock();
    for (let index = 0; index < command.users.length && !stopped; index += 1) {
      // An absolute schedule, so a slow tick does not lower the rate.
      const wait = startedAt + index * intervalMs - wallClock();
      if (wait > 0) await sleep(wait);
      if (stopped) break;
      const signed = signedTextCallback({ from: command.users[index]!, text: `${PROBE_TEXT} ${index}` });
      const postedAt = wallClock();
      const probe = post("/im/callback", signed.headers, signed.body)
        .then((answer) => {
          if (answer.status !== 200) failed += 1;
        })
        .catch(() => {
          failed += 1;
        })
        .then(() => {
          acks.push(wallClock() - postedAt);
          inFlight.delete(probe);
        });
      inFlight.add(probe);
    }
  })();
  return {
    async stop() {
      stopped = true;
      await loop;
      await Promise.race([Promise.all(inFlight), sleep(10_000)]);
      agent.destroy();
      return { acks, failed, posted: acks.length + inFlight.size };
    },
  };
}

interface AnchorCommand {
  apiBase: string;
  appKey: string;
  appSecret: string;
  from: string;
  recipients: string[];
  bodyCharacters: number;
  /** Messages sent first, as fast as the sockets allow, and not measured. */
  warmup: number;
  count: number;
  ratePerSecond: number;
  sockets: number;
}

async function runAnchor(command: AnchorCommand) {
  const undici = await undiciPoster(command.apiBase, command.sockets);
  const agent = new Agent({ keepAlive: true, maxSockets: command.sockets });
  const post = undici?.post ?? nodeHttpPoster(command.apiBase, agent);
  const client = undici ? "undici Pool" : "node:http Agent (keep-alive)";
  const streamId = randomUUID();
  const replyTo = randomUUID();
  // The delta is padded so the body has the bridge's mean segment size.
  const emptyLength = JSON.stringify(segmentBody({ streamId, replyTo, seq: 1000, delta: "" })).length;
  const delta = "x".repeat(Math.max(1, command.bodyCharacters - emptyLength));
  const option = JSON.stringify(SEGMENT_OPTION);
  let sent = 0;
  let failed = 0;
  let formBytes = 0;
  const inFlight = new Set<Promise<void>>();
  const sendOne = (seq: number) => {
    const form = new URLSearchParams({
      from: command.from,
      ope: "0",
      to: command.recipients[seq % command.recipients.length]!,
      type: "100",
      body: JSON.stringify(segmentBody({ streamId, replyTo, seq, delta })),
      option,
    }).toString();
    formBytes += form.length;
    const nonce = createNonce();
    const curTime = String(Math.floor(Date.now() / 1000));
    const headers = {
      "content-type": "application/x-www-form-urlencoded;charset=utf-8",
      AppKey: command.appKey,
      Nonce: nonce,
      CurTime: curTime,
      CheckSum: apiCheckSum(command.appSecret, nonce, curTime),
    };
    const sending = post("/msg/sendMsg.action", headers, form)
      .then((answer) => {
        const envelope = JSON.parse(answer.text) as { code?: number };
        if (answer.status === 200 && envelope.code === 200) sent += 1;
        else failed += 1;
      })
      .catch(() => {
        failed += 1;
      })
      .then(() => {
        inFlight.delete(sending);
      });
    inFlight.add(sending);
  };
  // Warm-up, not measured: the JIT compiles the send path as it would have in a long-running bridge.
  for (let seq = 0; seq < command.warmup; seq += 1) {
    if (inFlight.size >= command.sockets) await Promise.race(inFlight);
    sendOne(seq);
  }
  await Promise.all(inFlight);
  sent = 0;
  failed = 0;
  formBytes = 0;
  const cpuBefore = process.cpuUsage();
  const startedAt = wallClock();
  let issued = 0;
  // Open loop at the bridge's own message rate, at most `sockets` requests in flight. What is due
  // goes out on a 10 ms tick, so the pacing timer itself costs next to nothing per message.
  while (issued < command.count) {
    const due = Math.min(command.count, Math.floor(((wallClock() - startedAt) / 1000) * command.ratePerSecond) + 1);
    while (issued < due && inFlight.size < command.sockets) sendOne(command.warmup + issued++);
    if (issued < due) await Promise.race(inFlight);
    else await sleep(10);
  }
  await Promise.all(inFlight);
  // process.cpuUsage is the whole process (every thread), like /proc/<pid>/stat, in µs.
  const cpu = process.cpuUsage(cpuBefore);
  const elapsedMs = wallClock() - startedAt;
  agent.destroy();
  await undici?.close();
  return {
    client,
    sent,
    failed,
    elapsedMs,
    cpuMs: (cpu.user + cpu.system) / 1000,
    meanFormBytes: formBytes / Math.max(1, issued),
  };
}

let probes: ReturnType<typeof startProbes> | undefined;

process.on("message", async (message: { id: number; type: string } & Record<string, unknown>) => {
  const answer = (value: Record<string, unknown>) => process.send?.({ ...value, id: message.id });
  try {
    switch (message.type) {
      case "callbacks":
        answer(await postCallbacks(message as unknown as CallbacksCommand));
        return;
      case "probe-start":
        probes = startProbes(message as unknown as ProbeCommand);
        answer({});
        return;
      case "probe-stop": {
        const result = probes ? await probes.stop() : { acks: [], failed: 0, posted: 0 };
        probes = undefined;
        answer(result);
        return;
      }
      case "anchor":
        answer(await runAnchor(message as unknown as AnchorCommand));
        return;
      case "stop":
        answer({});
        process.exit(0);
        return;
      default:
        answer({ monotonicMicros: Number(process.hrtime.bigint() / 1000n) });
    }
  } catch (error) {
    answer({ error: error instanceof Error ? error.message : String(error) });
  }
});

process.send?.({ type: "ready", url: "", pid: process.pid });
