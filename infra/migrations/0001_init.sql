-- Initial schema of the memory store. Runs inside one transaction with search_path set to
-- "<schema>, <schema of the vector extension>", so every name here is unqualified.

CREATE TABLE users (
  id         text PRIMARY KEY,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- A project is addressed by its name, unique per user.
CREATE TABLE projects (
  id         bigserial PRIMARY KEY,
  user_id    text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  name       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT projects_user_name_key UNIQUE (user_id, name)
);

-- Session ids are chosen by clients, so they are unique per user only.
CREATE TABLE sessions (
  user_id      text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  id           text NOT NULL,
  project_id   bigint REFERENCES projects (id) ON DELETE SET NULL,
  session_type text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, id)
);

CREATE TABLE memories (
  id              uuid PRIMARY KEY,
  user_id         text NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  session_id      text,
  session_type    text,
  project_id      bigint REFERENCES projects (id),
  content         text NOT NULL,
  content_type    text NOT NULL,
  metadata        jsonb NOT NULL DEFAULT '{}'::jsonb,
  content_hash    text NOT NULL,
  embedding       vector(384) NOT NULL,
  embedding_model text NOT NULL,
  -- Set by the Chroma -> PostgreSQL migration so that a rollback removes exactly its rows.
  migration_id    text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  updated_at      timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT memories_session_fkey FOREIGN KEY (user_id, session_id) REFERENCES sessions (user_id, id),
  CONSTRAINT memories_metadata_object CHECK (jsonb_typeof(metadata) = 'object')
);

-- Approximate nearest neighbours by cosine distance (the `<=>` operator).
CREATE INDEX memories_embedding_hnsw_idx ON memories
  USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64);

-- Scope columns: every query is for one user, narrowed by session, project or content type.
-- (user_id, created_at, id) also serves the newest-first listing and the exact-scan row count.
CREATE INDEX memories_user_created_idx ON memories (user_id, created_at DESC, id DESC);
CREATE INDEX memories_user_session_idx ON memories (user_id, session_id);
CREATE INDEX memories_user_project_idx ON memories (user_id, project_id);
CREATE INDEX memories_user_content_type_idx ON memories (user_id, content_type);
CREATE INDEX memories_migration_idx ON memories (migration_id) WHERE migration_id IS NOT NULL;

-- Metadata `$eq` conditions are translated to containment (`metadata @> '{"k": v}'`), which this serves.
CREATE INDEX memories_metadata_idx ON memories USING gin (metadata jsonb_path_ops);

-- Dedup: one copy of a content per user + session + project (NULL session/project count as one scope).
CREATE UNIQUE INDEX memories_dedup_key ON memories
  (user_id, (coalesce(session_id, '')), (coalesce(project_id, 0)), content_hash);
