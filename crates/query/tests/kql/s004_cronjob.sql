SELECT * FROM "AzureDiagnostics"
WHERE "Category" = 'kube-audit'
  AND json_text(json_get("log_s", 'verb')) = 'create'
  AND json_text(json_get("log_s", 'requestObject', 'kind')) = 'CronJob'
