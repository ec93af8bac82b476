-- sfp-test/postgres baseline: what the upstream supabase/postgres image has created by the time
-- the mounted init scripts run. Executed once, by supabase_admin, on a freshly made cluster, in
-- the database POSTGRES_DB. The initial password is read from the environment into the psql
-- variable `pw` (not `pgpass`: the project's own scripts \set that one themselves); never from
-- psql's command line (`-v pw=...`), which every user of the host can read with `ps`.

\set ON_ERROR_STOP on
\getenv pw POSTGRES_PASSWORD

BEGIN;

ALTER ROLE supabase_admin WITH SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;

-- Not a superuser, as upstream leaves it once its post-setup has run.
CREATE ROLE postgres WITH LOGIN CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD :'pw';

-- API roles: PostgREST logs in as authenticator and switches to one of the three.
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator WITH LOGIN NOINHERIT PASSWORD :'pw';
GRANT anon, authenticated, service_role TO authenticator;
GRANT anon, authenticated, service_role TO postgres;

-- Service roles, each owning what its service migrates.
CREATE ROLE supabase_auth_admin WITH LOGIN NOINHERIT CREATEROLE PASSWORD :'pw';
CREATE ROLE supabase_storage_admin WITH LOGIN NOINHERIT CREATEROLE PASSWORD :'pw';
CREATE ROLE supabase_functions_admin WITH LOGIN NOINHERIT CREATEROLE PASSWORD :'pw';
CREATE ROLE supabase_replication_admin WITH LOGIN REPLICATION PASSWORD :'pw';
CREATE ROLE supabase_read_only_user WITH LOGIN BYPASSRLS PASSWORD :'pw';
GRANT pg_read_all_data TO supabase_read_only_user;
CREATE ROLE dashboard_user WITH NOLOGIN CREATEDB CREATEROLE REPLICATION;
CREATE ROLE pgbouncer WITH LOGIN PASSWORD :'pw';

ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';

CREATE PUBLICATION supabase_realtime;

CREATE SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE EXTENSION pgcrypto WITH SCHEMA extensions;
CREATE EXTENSION pg_stat_statements WITH SCHEMA extensions;
GRANT USAGE ON SCHEMA extensions TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA extensions TO dashboard_user;

-- The cluster's databases belong to supabase_admin; postgres still creates the app's objects.
DO $$
BEGIN
  EXECUTE format('GRANT ALL ON DATABASE %I TO postgres, dashboard_user', current_database());
END
$$;
GRANT ALL ON SCHEMA public TO postgres;
GRANT ALL ON SCHEMA extensions TO postgres;
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public
  GRANT ALL ON TABLES TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public
  GRANT ALL ON FUNCTIONS TO postgres, anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public
  GRANT ALL ON SEQUENCES TO postgres, anon, authenticated, service_role;

CREATE SCHEMA auth AUTHORIZATION supabase_auth_admin;
GRANT USAGE ON SCHEMA auth TO postgres, anon, authenticated, service_role, dashboard_user;
ALTER ROLE supabase_auth_admin SET search_path = auth;

CREATE SCHEMA storage AUTHORIZATION supabase_storage_admin;
GRANT USAGE ON SCHEMA storage TO postgres, anon, authenticated, service_role, dashboard_user;
ALTER ROLE supabase_storage_admin SET search_path = storage;

CREATE SCHEMA realtime;
GRANT USAGE ON SCHEMA realtime TO postgres, anon, authenticated, service_role;
CREATE SCHEMA _realtime;

CREATE SCHEMA graphql_public;
GRANT USAGE ON SCHEMA graphql_public TO postgres, anon, authenticated, service_role;

CREATE SCHEMA supabase_functions AUTHORIZATION supabase_admin;
GRANT USAGE ON SCHEMA supabase_functions TO postgres, anon, authenticated, service_role;
GRANT ALL ON SCHEMA supabase_functions TO supabase_functions_admin;

ALTER ROLE supabase_admin SET search_path TO "$user", public, auth, extensions;
ALTER ROLE postgres SET search_path TO "$user", public, extensions;

COMMIT;
