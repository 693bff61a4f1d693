import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { gunzipSync } from 'node:zlib';
import { seededRandom } from './stats';

/**
 * Real text already on every Debian machine, nothing to install: the entries of the Debian
 * changelogs under /usr/share/doc (short notes written by people, like memories: "Fix crash when the
 * config file is missing"), then the paragraphs of /usr/share/common-licenses where more are needed.
 * Deduplicated, 20-400 characters, shuffled with a fixed seed so a machine gets the same corpus each run.
 */
export interface Corpus {
  source: string;
  texts: string[];
}

const DOC = '/usr/share/doc';
const LICENSES = '/usr/share/common-licenses';

function changelogEntries(file: string): string[] {
  const out: string[] = [];
  let text: string;
  try {
    text = gunzipSync(readFileSync(file)).toString('utf8');
  } catch {
    return out;
  }
  let current: string | undefined;
  const flush = () => {
    if (current) out.push(current.replace(/\s+/g, ' ').trim());
    current = undefined;
  };
  for (const line of text.split('\n')) {
    if (/^\s{2,4}[*-] /.test(line)) {
      flush();
      current = line.replace(/^\s*[*-]\s+/, '');
    } else if (current && /^\s{4,}\S/.test(line)) {
      current += ` ${line.trim()}`;
    } else {
      flush();
    }
  }
  flush();
  return out;
}

function licenseParagraphs(): string[] {
  if (!existsSync(LICENSES)) return [];
  const out: string[] = [];
  for (const name of readdirSync(LICENSES).sort()) {
    const file = path.join(LICENSES, name);
    try {
      for (const p of readFileSync(file, 'utf8').split(/\n\s*\n/)) out.push(p.replace(/\s+/g, ' ').trim());
    } catch {
      // a folder or unreadable file: skip
    }
  }
  return out;
}

/** Loads up to `limit` distinct texts (all when omitted). */
export function loadCorpus(limit = Number.POSITIVE_INFINITY): Corpus {
  const seen = new Set<string>();
  const texts: string[] = [];
  const sources: string[] = [];
  const add = (entries: string[]) => {
    for (const t of entries) {
      if (t.length < 20 || t.length > 400 || seen.has(t)) continue;
      seen.add(t);
      texts.push(t);
    }
  };
  if (existsSync(DOC)) {
    const before = texts.length;
    for (const pkg of readdirSync(DOC).sort()) {
      const file = path.join(DOC, pkg, 'changelog.Debian.gz');
      if (existsSync(file)) add(changelogEntries(file));
    }
    if (texts.length > before) sources.push(`Debian changelog entries (${DOC}/*/changelog.Debian.gz)`);
  }
  if (texts.length < 5_000) {
    const before = texts.length;
    add(licenseParagraphs());
    if (texts.length > before) sources.push(`paragraphs of ${LICENSES}`);
  }
  if (texts.length === 0) throw new Error(`no text corpus found under ${DOC} or ${LICENSES}`);
  // Fisher-Yates with a fixed seed: a mix of packages in any prefix of the corpus.
  const random = seededRandom(20_240_601);
  for (let i = texts.length - 1; i > 0; i -= 1) {
    const j = Math.floor(random() * (i + 1));
    [texts[i], texts[j]] = [texts[j]!, texts[i]!];
  }
  return { source: sources.join(' + '), texts: texts.slice(0, limit) };
}

/** `n` distinct texts from the corpus, starting at `offset`; past its end, numbered variations. */
export function textsFrom(corpus: Corpus, n: number, offset = 0): string[] {
  const out: string[] = [];
  const size = corpus.texts.length;
  for (let i = 0; i < n; i += 1) {
    const k = offset + i;
    const base = corpus.texts[k % size]!;
    out.push(k < size ? base : `${base} (variation ${Math.floor(k / size)})`);
  }
  return out;
}

export function meanLength(texts: string[]): number {
  return texts.reduce((a, t) => a + t.length, 0) / (texts.length || 1);
}
