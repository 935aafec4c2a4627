// `meshlet dtab show|resolve|delegate`: check a dtab before sending it in an l5d-dtab header.
import { FlagError, helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';
import { Dtab } from './dtab.ts';
import { DtabParseError, parsePath } from './parser.ts';
import { BindError, Interpreter, encodeBound, encodeError } from './bind.ts';
import { parseDtabHeaders } from './headers.ts';
import { delegate } from './delegate.ts';

const USAGE = `usage: meshlet dtab <command>

  show '<dtab>'                         print the canonical form (exit 2 on a parse error)
  resolve [--dtab '<base>'] [--ctx '<l5d-ctx-dtab>'] [--override '<l5d-dtab>'] <path>
                                        bind <path>; print the bound tree as JSON
  delegate --dtab '<dtab>' [--pretty] <path>
                                        explain the binding (the admin /delegator.json body)

Offline, only the system namers (/$/inet, /$/fail, /$/nil, Linkerd's /$/io.buoyant.*) exist:
/#/meshlet/... names are Neg here. Ask a running proxy's admin /delegator.json for those.`;

const RESOLVE: FlagSpec[] = [
  { name: 'dtab', type: 'string', default: '', help: 'base dtab (default: empty)' },
  { name: 'ctx', type: 'list', default: [], help: 'an l5d-ctx-dtab header value (repeatable)' },
  { name: 'override', type: 'list', default: [], help: 'an l5d-dtab header value (repeatable)' },
];
const DELEGATE: FlagSpec[] = [
  { name: 'dtab', type: 'string', default: '', help: 'the dtab' },
  { name: 'pretty', type: 'boolean', default: false, help: 'indent the JSON' },
];

export async function main(argv: string[]): Promise<number | undefined> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'show': {
        if (rest[0] === '--help' || rest[0] === '-h') { console.log(`usage: meshlet dtab show '<dtab>'`); return 0; }
        if (rest.length !== 1) { console.error(`usage: meshlet dtab show '<dtab>'`); return 2; }
        console.log(Dtab.parse(rest[0]).show());
        return 0;
      }
      case 'resolve': {
        const p = parseFlags(rest, RESOLVE);
        if (p.help) { console.log(helpText("meshlet dtab resolve [flags] <path>", 'Bind a path against base ++ ctx ++ override, as a request would be.', RESOLVE)); return 0; }
        if (p.positional.length !== 1) { console.error('meshlet dtab resolve: exactly one <path> is required'); return 2; }
        const base = Dtab.parse(p.flags.dtab as string);
        const hdr = parseDtabHeaders(p.flags.ctx as string[], p.flags.override as string[]);
        if (!hdr.ok) throw new DtabParseError(hdr.message);
        const path = parsePath(p.positional[0]);
        const it = new Interpreter(base);
        let out: unknown;
        try { out = encodeBound(it.bind(path, hdr.local)); } catch (e) { if (e instanceof BindError) out = encodeError(e); else throw e; }
        console.log(JSON.stringify(out));
        return 0;
      }
      case 'delegate': {
        const p = parseFlags(rest, DELEGATE);
        if (p.help) { console.log(helpText("meshlet dtab delegate --dtab '<dtab>' <path>", 'Explain a binding: every alternative expanded (the /delegator.json body).', DELEGATE)); return 0; }
        if (p.positional.length !== 1) { console.error('meshlet dtab delegate: exactly one <path> is required'); return 2; }
        const dtab = Dtab.parse(p.flags.dtab as string);
        const path = parsePath(p.positional[0]);
        const body = await delegate(new Interpreter(Dtab.empty), dtab, path);
        console.log(JSON.stringify(body, null, p.flags.pretty ? 2 : undefined));
        return 0;
      }
      case undefined: case '--help': case '-h': case 'help':
        console.log(USAGE);
        return cmd === undefined ? 2 : 0;
      default:
        console.error(`meshlet dtab: unknown command '${cmd}'\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof DtabParseError || e instanceof FlagError) { console.error(e.message); return 2; }
    throw e;
  }
}
