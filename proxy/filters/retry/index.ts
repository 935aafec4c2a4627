// Retry, in one module: the policy (compiled per route, header overrides, which failures it
// accepts), one request's state (limit, breaker slot, budget, backoff) and the rate budget.
// The router (the terminal filter) drives it; nothing else decides a retry.
export { accepts, compileRetry, policyFrom, requestPolicy, NO_RETRY, type FailureKind, type RetryPolicy, type RouteRetry } from './policy.ts';
export { Backoff, RetryState, type Decision } from './state.ts';
export { RetryBudget, retryBudgetFactory } from './budget.ts';
