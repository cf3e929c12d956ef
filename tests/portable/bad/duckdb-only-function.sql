-- expect: is DuckDB-only
SELECT source, event_id, jaro_winkler_similarity(action, 'iam:PassRole')::VARCHAR AS message FROM chains
