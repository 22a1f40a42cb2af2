SELECT "TimeGenerated", "Caller", "OperationName", "ResourceGroup", "SubscriptionId", "Properties"
FROM "AzureActivity"
WHERE "TimeGenerated" > TIMESTAMP '2026-01-05T12:00:00Z'
  AND "ResourceProvider" = 'Microsoft.ContainerService'
  AND "ActivityLevel" = 'Informational'
  AND "CategoryValue" = 'Administrative'
ORDER BY "TimeGenerated" DESC
