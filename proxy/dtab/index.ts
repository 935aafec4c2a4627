// Finagle / Linkerd 1 delegation tables: public API (docs: proxy/dtab/README.md).
export { EMPTY_PATH, concatPath, isShowable, latin1Elem, pathEquals, showElem, showPath, startsWith, utf8Elem, type Path } from './path.ts';
export { DtabParseError, ANY, parseDentry, parseDentries, parseNameTree, parsePath, type Dentry, type PrefixElem } from './parser.ts';
export { EMPTY, FAIL, NEG, evalTree, leaf, mapTree, showPathTree, showTree, showWeight, simplify, type Bound, type NameTree } from './tree.ts';
export { Dtab, matchPrefix, matchesPrefix, parseDtab, rewrite, showDentry, showPrefix } from './dtab.ts';
export {
  BindError, Interpreter, LINKERD_CLASSPATH, MAX_DEPTH, encodeBound, encodeError, isBound, pickBranch,
  type BoundTree, type InterpreterOptions, type Name, type Namer,
} from './bind.ts';
export { defaultResolver, delegate, explain, inetAton, resolutions, type AddrResolver, type DelegateNode } from './delegate.ts';
export { javaUrlEncode, parseDtabHeaders, unableToRoute, type DtabHeaders, type UnableToRoute } from './headers.ts';
export { makeIdentifier, type Identified, type IdentifierConfig, type Identifier, type IdentifyRequest } from './identify.ts';
export { DEFAULT_BASE_DTAB, MESHLET_NAMER_PREFIX, meshletNamer, type MeshService } from './meshlet-namer.ts';
export { delegatorPage } from './delegator-page.ts';
