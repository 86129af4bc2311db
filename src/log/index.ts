export * from './query-log.js';
export * from './dnstap.js';
export { Anonymizer, type AnonymizeConfig } from './anonymize.js';
