// Finagle / Linkerd 1 delegation tables: public API (docs: proxy/dtab/README.md).
export { Dtab, showDentry, showPrefix, matchPrefix } from './dtab.ts';
export { DtabParseError, parseDentry, parseDentries, parseNameTree, parsePath, type Dentry } from './parser.ts';
export { showPath, showPathTree, showWeight, simplify, evalTree, leaf, NEG, FAIL, EMPTY, type Bound, type NameTree, type Path } from './tree.ts';
export { Interpreter, BindError, pickBranch, encodeBound, encodeError, LINKERD_CLASSPATH, MAX_DEPTH, isBound, type Namer, type Name, type BoundTree } from './bind.ts';
export { delegate, inetAton, defaultResolver, type AddrResolver } from './delegate.ts';
export { parseDtabHeaders, javaUrlEncode, unableToRoute, type DtabHeaders } from './headers.ts';
export { makeIdentifier, type IdentifierConfig, type Identifier, type IdentifyRequest } from './identify.ts';
export { meshletNamer, MESHLET_NAMER_PREFIX, type MeshService } from './meshlet-namer.ts';

export const DEFAULT_BASE_DTAB = '/srv => /#/meshlet; /svc => /srv;';
