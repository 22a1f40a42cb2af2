SELECT "TimeGenerated", "ResourceId", "log_s", "pod_s"
FROM "AzureDiagnostics"
WHERE "Category" = 'kube-audit-admin'
ORDER BY "TimeGenerated" DESC
LIMIT 200
