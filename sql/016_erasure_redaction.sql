-- Up Migration
-- An erasure also redacts the copies operators made of the subject's value (or tenant id) in the audit of their own
-- actions: a range replay's payload filter or transform, a DLQ repair's value, patch, selection or reason
-- (repository/erasure-redaction.ts). This function returns the JSON with the value replaced by '[erased]' in every
-- string and key, and a number that is the value made the string '[erased]'; everything else as it was.
CREATE FUNCTION erasure_redact(j jsonb, v text) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
  CASE jsonb_typeof(j)
    WHEN 'object' THEN
      RETURN coalesce((SELECT jsonb_object_agg(replace(k, v, '[erased]'), erasure_redact(x, v))
                         FROM jsonb_each(j) AS e(k, x)), '{}'::jsonb);
    WHEN 'array' THEN
      RETURN coalesce((SELECT jsonb_agg(erasure_redact(x, v) ORDER BY i)
                         FROM jsonb_array_elements(j) WITH ORDINALITY AS a(x, i)), '[]'::jsonb);
    WHEN 'string' THEN
      RETURN to_jsonb(replace(j #>> '{}', v, '[erased]'));
    WHEN 'number' THEN
      RETURN CASE WHEN j::text = v THEN to_jsonb('[erased]'::text) ELSE j END;
    ELSE
      RETURN j;
  END CASE;
END
$$;
