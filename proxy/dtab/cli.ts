// `meshlet dtab show|resolve|delegate`: check a dtab offline before sending it in an l5d-dtab
// header, and see what a name binds to. Exit 0 with an answer, 2 on usage or parse errors.
import { FlagError, helpText, parseFlags, type FlagSpec } from '../../cli/flags.ts';
import { Dtab } from './dtab.ts';
import { DtabParseError, parsePath } from './parser.ts';
import { BindError, Interpreter, encodeBound, encodeError } from './bind.ts';
import { parseDtabHeaders } from './headers.ts';
import { delegate } from './delegate.ts';

const OFFLINE = `Offline only the system namers exist: /$/inet, /$/fixedinet, /$/fail, /$/nil and Linkerd's
/$/io.buoyant.* classpath namers. The meshlet namer is not available, so /#/meshlet/... names are
neg here; ask a running proxy's admin /delegator.json for those.`;

const USAGE = `usage: meshlet dtab <command> [flags]

commands:
  show '<dtab>'          print the canonical (show) form; exit 2 with the parser message if invalid
  resolve [flags] <path> bind <path> as a request would be; print the bound tree as JSON
  delegate [flags] <path>
                         explain the binding, every alternative expanded (the /delegator.json body)

run 'meshlet dtab <command> --help' for a command's flags.

${OFFLINE}`;

const SHOW_HELP = `usage: meshlet dtab show '<dtab>'

Parse a dtab (Finagle syntax: '/prefix => tree; ...') and print its canonical form: no spaces
around '=>', ';' between dentries, weights with two decimals. This is the form sent downstream
in l5d-ctx-dtab. Exit 2 with Finagle's parser message on stderr if the dtab is invalid.`;

const RESOLVE: FlagSpec[] = [
  { name: 'dtab', type: 'string', help: 'base dtab (default: the empty dtab, unlike a proxy, whose default is /srv => /#/meshlet; /svc => /srv)' },
  { name: 'ctx', type: 'list', default: [], help: 'an l5d-ctx-dtab header value (repeatable, in header order)' },
  { name: 'override', type: 'list', default: [], help: 'an l5d-dtab header value (repeatable, in header order)' },
  { name: 'max-depth', type: 'number', default: 100, help: 'nested lookup limit' },
  { name: 'pretty', type: 'boolean', default: false, help: 'indent the JSON' },
];
const RESOLVE_ABOUT = `Bind <path> against base ++ ctx ++ override (later dentries win), as the proxy binds a request's
logical name. Prints "neg", "fail", "empty", {"bound","residual"}, {"union":[{"weight","tree"}]},
or "error: max-depth" / "error: namer: <message>". Exit 2 if any dtab or the path does not parse.

${OFFLINE}`;

const DELEGATE: FlagSpec[] = [
  { name: 'dtab', type: 'string', help: 'the dtab (default: empty; only this dtab is used, as in Linkerd\'s delegator)' },
  { name: 'pretty', type: 'boolean', default: false, help: 'indent the JSON' },
];
const DELEGATE_ABOUT = `Explain how <path> delegates through the dtab: the admin /delegator.json body, with every
alternative and union branch expanded and errors shown in place. Exit 2 on a parse error.

${OFFLINE}`;

function json(v: unknown, pretty: boolean): string { return JSON.stringify(v, null, pretty ? 2 : undefined); }

function onePath(positional: string[], cmd: string): string | null {
  if (positional.length === 1) return positional[0];
  console.error(`meshlet dtab ${cmd}: exactly one <path> is required (got ${positional.length}); see --help`);
  return null;
}

export async function main(argv: string[]): Promise<number | undefined> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'show': {
        const args = rest[0] === '--' ? rest.slice(1) : rest;
        if (args === rest && (rest.includes('--help') || rest.includes('-h'))) { console.log(SHOW_HELP); return 0; }
        if (args.length !== 1) { console.error(`meshlet dtab show: exactly one '<dtab>' argument is required\n\n${SHOW_HELP}`); return 2; }
        console.log(Dtab.parse(args[0]).show());
        return 0;
      }
      case 'resolve': {
        const p = parseFlags(rest, RESOLVE);
        if (p.help) { console.log(helpText('meshlet dtab resolve [flags] <path>', RESOLVE_ABOUT, RESOLVE)); return 0; }
        const pathText = onePath(p.positional, 'resolve');
        if (pathText === null) return 2;
        const base = Dtab.parse((p.flags.dtab as string | undefined) ?? '');
        const hdr = parseDtabHeaders(p.flags.ctx as string[], p.flags.override as string[]);
        if (!hdr.ok) throw new DtabParseError(hdr.message);
        const path = parsePath(pathText);
        const it = new Interpreter(base, [], { maxDepth: p.flags['max-depth'] as number });
        let out: unknown;
        try { out = encodeBound(it.bind(path, hdr.local)); } catch (e) {
          if (!(e instanceof BindError)) throw e;
          out = encodeError(e);
        }
        console.log(json(out, p.flags.pretty as boolean));
        return 0;
      }
      case 'delegate': {
        const p = parseFlags(rest, DELEGATE);
        if (p.help) { console.log(helpText('meshlet dtab delegate [--dtab <dtab>] [--pretty] <path>', DELEGATE_ABOUT, DELEGATE)); return 0; }
        const pathText = onePath(p.positional, 'delegate');
        if (pathText === null) return 2;
        const dtab = Dtab.parse((p.flags.dtab as string | undefined) ?? '');
        const path = parsePath(pathText);
        const body = await delegate(new Interpreter(Dtab.empty), dtab, path);
        console.log(json(body, p.flags.pretty as boolean));
        return 0;
      }
      case '--help': case '-h': case 'help':
        console.log(USAGE);
        return 0;
      case undefined:
        console.error(USAGE);
        return 2;
      default:
        console.error(`meshlet dtab: unknown command '${cmd}'\n\n${USAGE}`);
        return 2;
    }
  } catch (e) {
    if (e instanceof DtabParseError || e instanceof FlagError) { console.error(e.message); return 2; }
    throw e;
  }
}
