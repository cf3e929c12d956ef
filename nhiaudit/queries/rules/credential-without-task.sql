-- id: credential-without-task
-- title: Action with no task behind it
-- severity: high
-- frameworks: ASI03, T8, MAESTRO:L6, AI-RMF:MEASURE-2.8, 800-53:AU-10, 800-53:AC-2
-- description: No credential on the action's chain carries a task id, the event itself carries none,
--   and no trace context joins it to an agent task. Nobody can say which task instance, intent or
--   requester the action served, so no approval can be tied to it.
-- remediation: Have the orchestrator stamp the task id on every credential it vends (AWS
--   sourceIdentity or a TaskId session tag, Vault token metadata task_id) and propagate W3C
--   traceparent through gateways; retire credentials that act outside any task.
SELECT source, event_id, credential_id, task_id,
       'No task: ' || coalesce(action, '?') || ' by ' || coalesce(actor_id, '?')
       || ' with credential ' || coalesce(credential_id, '(none)')
       || ' carries no task id on its chain and no trace context' AS message
FROM chains
WHERE task_id IS NULL
