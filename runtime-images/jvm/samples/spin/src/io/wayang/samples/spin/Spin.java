package io.wayang.samples.spin;

import java.util.function.Function;

/**
 * Never returns. With the text "sleep" it sleeps, so the host's deadline interrupts it and the
 * JVM serves on; otherwise it loops ignoring interrupts, so the JVM must be replaced.
 */
public final class Spin implements Function<String, String> {
    private volatile long turns;

    @Override
    public String apply(String request) {
        if (request.contains("\"sleep\"")) {
            try {
                Thread.sleep(Long.MAX_VALUE);
            } catch (InterruptedException interrupted) {
                return "{\"error\":{\"type\":\"ToolError\",\"message\":\"interrupted\"}}";
            }
        }
        while (true) {
            turns++;
        }
    }
}
