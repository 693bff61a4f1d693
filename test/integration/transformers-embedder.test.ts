import { cosineSimilarity, TransformersEmbedder, UnavailableError } from 'memory-core';
import { testModel } from '../setup/servers';

const norm = (v: Float32Array) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));

describe.each(['q8', 'fp32'] as const)(
  'TransformersEmbedder (%s, real transformers.js pipeline)',
  (dtype) => {
    let embedder: TransformersEmbedder;

    beforeAll(async () => {
      embedder = await TransformersEmbedder.load({ model: testModel.model, dtype, batchSize: 8 });
    });
    afterAll(() => embedder.close());

    it('reports model, dtype and 384 dimensions', () => {
      expect(embedder.info).toEqual({ model: testModel.model, dtype, dimension: 384 });
    });

    it('returns one 384-d unit vector per text, in input order', async () => {
      const texts = [
        'short',
        'a somewhat longer sentence about memory',
        'x',
        'Wisdom is understanding what truly matters',
      ];
      const vectors = await embedder.embed(texts);
      expect(vectors).toHaveLength(texts.length);
      for (const v of vectors) {
        expect(v).toHaveLength(384);
        expect(norm(v)).toBeCloseTo(1, 5);
      }
      // Order survives the length-sorted batching: each vector equals the text embedded alone.
      for (const [i, text] of texts.entries()) {
        const [alone] = await embedder.embed([text]);
        expect(cosineSimilarity(alone!, vectors[i]!)).toBeGreaterThanOrEqual(0.9999);
      }
    });

    it('gives the same vector for the same text', async () => {
      const [a, b] = await embedder.embed(['the same text', 'the same text']);
      expect(cosineSimilarity(a!, b!)).toBeGreaterThanOrEqual(0.99999);
    });

    it('agrees for a text embedded alone and inside a batch of 20 mixed lengths (cosine >= 0.9999)', async () => {
      const target = 'A man is eating a piece of bread.';
      const others = Array.from({ length: 19 }, (_, i) => `filler sentence number ${i} `.repeat((i % 5) + 1));
      const [alone] = await embedder.embed([target]);
      const batch = await embedder.embed([...others.slice(0, 7), target, ...others.slice(7)]);
      expect(cosineSimilarity(alone!, batch[7]!)).toBeGreaterThanOrEqual(0.9999);
    });

    it('scores texts that share words higher than texts that share none', async () => {
      const [query, sharing, unrelated] = await embedder.embed([
        'A man is eating food.',
        'A man is eating a piece of bread.',
        'The monkey plays drums loudly.',
      ]);
      expect(cosineSimilarity(query!, sharing!)).toBeGreaterThan(cosineSimilarity(query!, unrelated!));
    });

    it('truncates text beyond 256 word pieces instead of failing', async () => {
      const long = 'memory '.repeat(2000);
      const [v, truncated] = await embedder.embed([long, 'memory '.repeat(254)]);
      expect(v).toHaveLength(384);
      // 254 words + [CLS] + [SEP] = 256 pieces: the same input the long text is cut down to.
      expect(cosineSimilarity(v!, truncated!)).toBeGreaterThanOrEqual(0.9999);
    });
  },
);

describe('TransformersEmbedder loading', () => {
  it('fails with one line naming EMBEDDING_MODEL when the folder has no model', async () => {
    const error = await TransformersEmbedder.load({
      model: '/nonexistent/model',
      dtype: 'q8',
      batchSize: 4,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnavailableError);
    expect((error as Error).message).toMatch(/EMBEDDING_MODEL/);
    expect((error as Error).message).not.toMatch(/\n/);
  });

  it('loads with ONNX thread spinning off (EMBEDDING_THREAD_SPINNING) and gives the same vectors', async () => {
    const texts = ['Wisdom is understanding what truly matters', 'short', 'a longer sentence '.repeat(20)];
    const [spinning, quiet] = await Promise.all(
      [true, false].map((threadSpinning) =>
        TransformersEmbedder.load({ model: testModel.model, dtype: 'q8', batchSize: 8, threadSpinning }),
      ),
    );
    try {
      const [a, b] = await Promise.all([spinning!.embed(texts), quiet!.embed(texts)]);
      for (const [i, v] of a.entries()) expect(cosineSimilarity(v, b[i]!)).toBeGreaterThanOrEqual(0.99999);
    } finally {
      await Promise.all([spinning!.close(), quiet!.close()]);
    }
  });
});
