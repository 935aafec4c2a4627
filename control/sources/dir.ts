// The control server's config directory source: the watcher shared with `meshlet proxy --watch`
// (it lives with the proxy's config loading, which control may import and the proxy must not
// import from control).
export { DEFAULT_DIR_OPTIONS, DirSource, readDir, type DirFiles, type DirSourceOptions } from '../../proxy/config/watch.ts';
