import { MemoryInput, MemoryLimits } from './memory.schemas';
import { toQueuedMemory } from './memory-record';

describe('MemoryInput', () => {
  it('accepts the seed request and fills defaults', () => {
    const parsed = MemoryInput.parse({
      content: 'Wisdom',
      session_id: 1,
      metadata: { session_type: 'philosophy' },
    });
    expect(parsed).toEqual({
      content: 'Wisdom',
      session_id: '1',
      content_type: 'note',
      metadata: { session_type: 'philosophy' },
    });
  });

  it.each([
    [{ content: '' }, 'content'],
    [{ content: '   ' }, 'content'],
    [{ content: 'x'.repeat(MemoryLimits.contentMaxChars + 1) }, 'content'],
    [{ content: 'x', metadata: { a: { b: 1 } } }, 'metadata.a'],
    [{ content: 'x', metadata: { a: null } }, 'metadata.a'],
    [{ content: 'x', metadata: { user_id: 'spoof' } }, 'metadata.user_id'],
    [{ content: 'x', metadata: { 'bad key': 1 } }, 'metadata.bad key'],
    [
      { content: 'x', metadata: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`k${i}`, 1])) },
      'metadata',
    ],
    [{ content: 'x', metadata: { big: 'y'.repeat(1001) } }, 'metadata.big'],
    [{ content: 'x', session_id: '' }, 'session_id'],
    [{ content: 'x', content_type: 'two words' }, 'content_type'],
    [{ content: 'x', extra: 1 }, ''],
    [{ content: 'lone \ud800' }, 'content'],
    [{ content: '\udc00 first' }, 'content'],
    [{ content: 'x', metadata: { k: 'pair reversed \udc00\ud800' } }, 'metadata.k'],
    [{ content: 'x', session_type: 'high \udbff' }, 'session_type'],
    [{ content: 'x', session_id: '.' }, 'session_id'],
    [{ content: 'x', project: '..' }, 'project'],
    [JSON.parse('{"content":"x","metadata":{"__proto__":"v","a":1}}'), 'metadata.__proto__'],
  ])('rejects %j at %s', (input, path) => {
    const result = MemoryInput.safeParse(input);
    expect(result.success).toBe(false);
    expect(result.error!.issues.map((i) => i.path.join('.'))).toContain(path);
  });

  it('keeps surrogate pairs, and names with dots that are not a whole "." or ".."', () => {
    const parsed = MemoryInput.parse({
      content: 'an emoji \ud83d\ude00 whole',
      session_id: '...',
      project: '.hidden',
      metadata: { mood: '\u{1F600}', proto: '__proto__' },
    });
    expect(parsed).toMatchObject({
      content: 'an emoji 😀 whole',
      session_id: '...',
      project: '.hidden',
      metadata: { mood: '😀', proto: '__proto__' },
    });
  });
});

describe('toQueuedMemory', () => {
  it("lifts the seed's metadata session_type into the scope field", () => {
    const queued = toQueuedMemory(
      MemoryInput.parse({ content: 'x', metadata: { session_type: 'philosophy' } }),
      'id',
      new Date(0),
    );
    expect(queued).toMatchObject({ session_type: 'philosophy', metadata: { session_type: 'philosophy' } });
  });

  it('lifts a number as the scope field lifts it, and accepts both forms when they agree', () => {
    const queue = (input: object) => toQueuedMemory(MemoryInput.parse(input), 'id', new Date(0));
    expect(queue({ content: 'x', metadata: { session_type: 7 } }).session_type).toBe('7');
    expect(
      queue({ content: 'x', session_type: 'work', metadata: { session_type: ' work ' } }).session_type,
    ).toBe('work');
  });
});

describe('MemoryInput: metadata session_type', () => {
  // Filters on session_type mean the scope field: a metadata key that said otherwise could never be
  // filtered on.
  it.each([
    [{ session_type: 'work', metadata: { session_type: 'play' } }, 'must equal session_type'],
    [{ metadata: { session_type: true } }, 'a string or a non-negative integer'],
    [{ metadata: { session_type: -1 } }, 'a string or a non-negative integer'],
    [{ metadata: { session_type: '  ' } }, 'must not be empty'],
    [{ metadata: { session_type: '..' } }, 'must not be "." or ".."'],
  ])('refuses %j', (input, message) => {
    const parsed = MemoryInput.safeParse({ content: 'x', ...input });
    expect(parsed.success).toBe(false);
    expect(parsed.error!.issues).toEqual([
      expect.objectContaining({
        path: ['metadata', 'session_type'],
        message: expect.stringContaining(message),
      }),
    ]);
  });
});
