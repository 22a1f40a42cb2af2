SELECT count(*) AS "Count" FROM "SigninLogs"
WHERE "TimeGenerated" > TIMESTAMP '2026-01-05T12:00:00Z' AND "ResultType" <> '0' AND "AppDisplayName" ILIKE '%Azure Kubernetes Service%'
