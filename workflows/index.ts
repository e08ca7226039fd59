// The worker's workflowsPath: every workflow the replay task queue runs. Deterministic code only.
export { replayEventWorkflow } from './replay-event';
export { batchReplayWorkflow } from './batch-replay';
export { rangeReplayWorkflow } from './range-replay';
export { dlqRetryWorkflow } from './dlq-retry';
export { journalMaintenanceWorkflow } from './journal-maintenance';
export { erasureWorkflow } from './erasure';
export { notificationDeliveryWorkflow } from './notification-delivery';
export { dlqRepairWorkflow } from './dlq-repair';
export { dlqBulkWorkflow } from './dlq-bulk';
