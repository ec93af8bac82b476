-- Stand-in: one function, so the extension has a member object as a real one would.
CREATE FUNCTION plls_standin() RETURNS text LANGUAGE sql AS $$ SELECT 'plls stand-in'::text $$;
