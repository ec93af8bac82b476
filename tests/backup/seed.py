"""Realistic data for the round trip: Supabase-like roles, schemas with owners, an extension,
RLS, grants, default privileges, large objects, several databases (one with a non-ASCII name)
and a few MB of rows."""

GLOBALS = r"""
CREATE ROLE supabase_admin LOGIN SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD 'admin-pw';
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD 'authenticator-pw';
GRANT anon, authenticated, service_role TO authenticator;
CREATE ROLE supabase_auth_admin LOGIN CREATEROLE NOINHERIT PASSWORD 'auth-admin-pw';
CREATE ROLE supabase_storage_admin LOGIN CREATEROLE NOINHERIT PASSWORD 'storage-admin-pw';
GRANT authenticator TO supabase_storage_admin;
CREATE ROLE app_owner LOGIN PASSWORD 'app-owner-pw' CONNECTION LIMIT 20 VALID UNTIL '2099-01-01';
ALTER ROLE authenticator SET statement_timeout = '8s';
ALTER ROLE supabase_auth_admin SET search_path = auth;
CREATE DATABASE app OWNER app_owner;
ALTER DATABASE app SET work_mem = '8MB';
CREATE DATABASE "odd_name_ü" OWNER supabase_admin;
GRANT CONNECT ON DATABASE app TO authenticated;
REVOKE CONNECT ON DATABASE app FROM PUBLIC;
"""

POSTGRES_DB = r"""
CREATE EXTENSION pgcrypto;
CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
CREATE TABLE auth.users (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    email text UNIQUE NOT NULL,
    encrypted_password text,
    raw_user_meta_data jsonb,
    created_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE auth.users OWNER TO supabase_auth_admin;
CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE
    AS $$ SELECT nullif(current_setting('request.jwt.claim.sub', true), '')::uuid $$;
ALTER FUNCTION auth.uid() OWNER TO supabase_auth_admin;
INSERT INTO auth.users (id, email, encrypted_password, raw_user_meta_data, created_at)
SELECT md5('user' || i)::uuid, 'user' || i || '@example.org', encode(digest('pw' || i, 'sha256'), 'hex'),
       jsonb_build_object('name', 'User ' || i, 'n', i), timestamptz '2025-01-01' + i * interval '1 minute'
FROM generate_series(1, 20000) AS i;
CREATE TABLE storage.buckets (id text PRIMARY KEY, name text NOT NULL, public boolean DEFAULT false);
CREATE TABLE storage.objects (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    bucket_id text REFERENCES storage.buckets(id),
    name text NOT NULL,
    owner uuid,
    metadata jsonb
);
ALTER TABLE storage.buckets OWNER TO supabase_storage_admin;
ALTER TABLE storage.objects OWNER TO supabase_storage_admin;
ALTER TABLE storage.objects ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own objects" ON storage.objects FOR SELECT TO authenticated USING (owner = auth.uid());
GRANT USAGE ON SCHEMA storage TO anon, authenticated, service_role;
GRANT SELECT ON storage.objects TO authenticated;
GRANT ALL ON storage.objects TO service_role;
INSERT INTO storage.buckets VALUES ('avatars', 'avatars', true), ('docs', 'docs', false);
INSERT INTO storage.objects (id, bucket_id, name, owner, metadata)
SELECT md5('obj' || i)::uuid, CASE WHEN i % 2 = 0 THEN 'avatars' ELSE 'docs' END, 'folder/' || i || '.png',
       md5('user' || (i % 20000 + 1))::uuid, jsonb_build_object('size', i * 10, 'mimetype', 'image/png')
FROM generate_series(1, 5000) AS i;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO anon;
CREATE TABLE public.events (id bigserial PRIMARY KEY, kind text NOT NULL, payload jsonb, at timestamptz NOT NULL);
INSERT INTO public.events (kind, payload, at)
SELECT (ARRAY['login','logout','upload','delete'])[1 + i % 4], jsonb_build_object('i', i, 'h', md5(i::text)),
       timestamptz '2025-06-01' + i * interval '1 second'
FROM generate_series(1, 60000) AS i;
CREATE INDEX events_kind_at ON public.events (kind, at);
CREATE VIEW public.user_count AS SELECT count(*) AS n FROM auth.users;
CREATE MATERIALIZED VIEW public.events_per_kind AS SELECT kind, count(*) AS n FROM public.events GROUP BY kind;
COMMENT ON TABLE public.events IS 'audit trail ✓';
SELECT lo_from_bytea(424242, convert_to(repeat('large object ', 5000), 'UTF8'));
ALTER LARGE OBJECT 424242 OWNER TO supabase_storage_admin;
"""

APP_DB = r"""
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text, amount numeric(12,2),
                     m mood, placed date, note text);
ALTER TABLE orders OWNER TO app_owner;
INSERT INTO orders (customer, amount, m, placed, note)
SELECT 'cust' || (i % 997), (i % 10000) / 100.0, (ARRAY['sad','ok','happy'])[1 + i % 3]::mood,
       date '2024-01-01' + (i % 700), repeat(md5(i::text), 2)
FROM generate_series(1, 40000) AS i;
CREATE TABLE measurements (city text, at date, temp real) PARTITION BY RANGE (at);
CREATE TABLE measurements_2024 PARTITION OF measurements FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TABLE measurements_2025 PARTITION OF measurements FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
INSERT INTO measurements SELECT 'city' || (i % 50), date '2024-01-01' + (i % 720), (i % 400) / 10.0
FROM generate_series(1, 20000) AS i;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := coalesce(NEW.note, 'x'); RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION touch();
GRANT SELECT ON orders TO authenticated;
"""

ODD_DB = r"""
CREATE SCHEMA "Mixed Case";
CREATE TABLE "Mixed Case"."t ü" (k int PRIMARY KEY, v text);
INSERT INTO "Mixed Case"."t ü" SELECT i, 'ü' || i FROM generate_series(1, 1000) AS i;
"""


def seed(cluster) -> None:  # type: ignore[no-untyped-def]
    cluster.psql(GLOBALS)
    cluster.psql(POSTGRES_DB)
    cluster.psql(APP_DB, "app")
    cluster.psql(ODD_DB, "odd_name_ü")
