// The proxy's control-plane client: see client.ts and docs/control-protocol.md.
export { startControlClient, type ControlClientOptions, type ControlledProxy } from './client.ts';
export { emptySnapshot, snapshotProblems } from './validate-snapshot.ts';
