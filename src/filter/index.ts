// Public surface of the filtering engine.
export { filterConfigSchema, parseDuration } from './config.js';
export type { FilterConfig, FilterSection, GroupConfig, ListConfig, ForwardConfig, BlockMode, EdeCode } from './config.js';
export type { Decision, BlockDecision, LocalDecision, ForwardDecision, BadLine, LogFn } from './types.js';
export { FilterEngine, buildEngine, normalizeUpstream } from './engine.js';
export type { NeighbourEntry, ListInput, SourceInfo } from './engine.js';
export { FilterManager, readSystemNeighbours } from './manager.js';
export type { FilterManagerOptions, FilterStats, ListStats } from './manager.js';
export { writeBlockedAnswer, writeLocalAnswer } from './wire.js';
export { anyOfRules, checkRegex } from './regex-guard.js';
export { parseRule, normalizeDomain } from './parse.js';
