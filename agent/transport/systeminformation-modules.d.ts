// The two systeminformation modules the agent loads, typed from the package's own definitions. The package's index
// requires all of its ~20 modules (network, docker, wifi, printers, …); the agent needs these two.
declare module 'systeminformation/lib/osinfo.js' {
  import type { Systeminformation } from 'systeminformation';
  export function osInfo(): Promise<Systeminformation.OsData>;
}

declare module 'systeminformation/lib/system.js' {
  import type { Systeminformation } from 'systeminformation';
  export function system(): Promise<Systeminformation.SystemData>;
}
