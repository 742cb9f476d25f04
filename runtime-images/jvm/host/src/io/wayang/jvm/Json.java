package io.wayang.jvm;

/**
 * The little JSON this host writes itself (its load report and the errors it answers for the
 * plugin): the JDK has no JSON library, and the plugin's own answers pass through untouched.
 */
final class Json {
    private Json() {}

    static String quote(String text) {
        StringBuilder quoted = new StringBuilder(text.length() + 2).append('"');
        for (int i = 0; i < text.length(); i++) {
            char c = text.charAt(i);
            switch (c) {
                case '"' -> quoted.append("\\\"");
                case '\\' -> quoted.append("\\\\");
                case '\n' -> quoted.append("\\n");
                case '\r' -> quoted.append("\\r");
                case '\t' -> quoted.append("\\t");
                default -> {
                    if (c < 0x20) {
                        quoted.append(String.format("\\u%04x", (int) c));
                    } else {
                        quoted.append(c);
                    }
                }
            }
        }
        return quoted.append('"').toString();
    }

    /**
     * An answer of the plugin ABI's error form, {@code {"error": {...}}}; {@code details} is
     * already JSON.
     */
    static String error(String type, String message, boolean retryable, String details) {
        return "{\"error\":{\"type\":" + quote(type) + ",\"message\":" + quote(message)
                + ",\"retryable\":" + retryable + ",\"details\":" + details + "}}";
    }
}
