SELECT "TimeGenerated", "Verb", json_text(json_get("User", 'username')) AS "User", json_text(json_get("ObjectRef", 'resource')) AS "Resource"
FROM "AKSAudit"
WHERE json_text(json_get("ObjectRef", 'resource')) IN ('clusterrolebindings', 'cronjobs', 'pods')
  AND ("RequestUri" LIKE '%clusterrolebindings%' OR "RequestUri" ILIKE '%cronjob%' OR json_text(json_get("User", 'username')) ILIKE 'master%')
  AND "Verb" IN ('create', 'get')
ORDER BY "TimeGenerated" ASC
