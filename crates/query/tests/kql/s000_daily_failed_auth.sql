SELECT "UserPrincipalName", "IPAddress", "ResultType", count(*) AS "FailedAttempts"
FROM "SigninLogs"
WHERE "TimeGenerated" BETWEEN TIMESTAMP '2026-01-05T12:00:00Z' AND TIMESTAMP '2026-01-06T12:00:00Z'
  AND "ResultType" <> '0'
  AND "AppDisplayName" ILIKE '%Azure Kubernetes Service%'
GROUP BY "UserPrincipalName", "IPAddress", "ResultType"
ORDER BY "FailedAttempts" DESC
