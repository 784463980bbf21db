import { setFlagsFromString } from 'node:v8';

// Imported first by the agent's entry point, before anything it could make hot. V8's optimizing compiler (TurboFan)
// earns nothing in an agent that idles between readings, and its compiled code, its zones and the binary pages it
// runs from were ~10 MB of an idle agent's 66 MB (BENCHMARKS.md, issue 19). The baseline compiler (Sparkplug) goes
// too: half a MB of the idle agent's private memory. The bursts a migration brings are spent in spawned tools (nft,
// iptables-save, ip) and in native JSON and HMAC code, not in JavaScript worth compiling; the benchmark's flush to
// observation did not get slower. --jitless would save a little more, but must be given before V8 starts, and a
// single executable cannot carry flags in Node 20.
setFlagsFromString('--no-opt');
setFlagsFromString('--no-sparkplug');
