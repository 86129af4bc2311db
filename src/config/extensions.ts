// Schema fragments for keys owned by other subsystems, gathered in one place so the top level can
// still reject unknown keys.
export function extensionSchemas(): Record<string, object> {
  return {};
}
