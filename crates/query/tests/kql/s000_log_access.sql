SELECT "TimeGenerated", "Caller", "OperationName", "ResourceGroup", "Properties"
FROM "AzureActivity"
WHERE "TimeGenerated" > TIMESTAMP '2026-01-05T12:00:00Z'
  AND "ResourceProvider" = 'Microsoft.OperationalInsights'
  AND "OperationName" ILIKE '%query%'
ORDER BY "TimeGenerated" DESC
