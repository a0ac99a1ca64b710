/** The bench section `rtt`; bench.ts runs it. */

import { JupyterClient, type KernelChannel } from "../../lib/kernel/jupyter.ts";
import { rows, runtimeDir } from "../context.ts";
import { sampleExecutes, ZmqReference } from "../runners.ts";
import { compare, median } from "../stats.ts";
import { join } from "node:path";

export async function rttSection(
  label: string,
  server: { url: string; token: string },
  target: number,
): Promise<void> {
  const client = new JupyterClient(server);
  const kernel = await client.startKernel({ kernelName: "python3" });
  const zmq = await ZmqReference.start(join(runtimeDir, `kernel-${kernel.id}.json`));
  let channel: KernelChannel | undefined;
  try {
    channel = await client.connectKernel(kernel);
    const ws: number[] = [];
    const floor: number[] = [];
    await sampleExecutes(channel, 5);
    await zmq.run(5);
    const rounds = 6;
    for (let i = 0; i < rounds; i++) {
      ws.push(...await sampleExecutes(channel, 10));
      floor.push(...await zmq.run(10));
    }
    rows.push({
      ...compare(
        "execute round trip",
        `interp-exec KernelChannel.execute, ${label}`,
        ws,
        "ms",
        "jupyter_client over ZMQ, same kernel",
        floor,
      ),
      target: `<= ${target}x ZMQ`,
      pass: median(ws) / median(floor) <= target,
    });
  } finally {
    channel?.close();
    await zmq.stop();
    await client.shutdownKernel(kernel.id).catch(() => {});
  }
}
