SELECT date_bin(INTERVAL '1 day', "TimeGenerated", TIMESTAMP '1970-01-01T00:00:00Z') AS "TimeGenerated",
       count(*) AS "TotalActivities",
       count(DISTINCT "Caller") AS "UniqueUsers",
       count(CASE WHEN "ActivityStatus" = 'Failed' THEN 1 END) AS "FailedOperations"
FROM "AzureActivity"
WHERE "TimeGenerated" > TIMESTAMP '2025-12-30T12:00:00Z' AND "ResourceProvider" = 'Microsoft.ContainerService'
GROUP BY 1
ORDER BY 1 DESC
