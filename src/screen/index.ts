/** Output screening: every reply passes screenReply before it is shown. */
export { screenReply, logScreen, meanLogprob, ruleRegex, type ScreenResult, type ScreenEvent, type ReplyInfo } from "./screen.ts";
export { DEFAULT_SCREEN_CONFIG, loadScreenConfig, resolveScreenConfig, type ScreenConfig, type ScreenRule, type RuleAction } from "./config.ts";
export { findPii, luhnValid, cnIdValid, type PiiSpan, type PiiKind } from "./pii.ts";
export { findLoop, cutRunaway } from "./degeneration.ts";
