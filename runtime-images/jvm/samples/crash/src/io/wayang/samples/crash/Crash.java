package io.wayang.samples.crash;

import java.util.function.Function;
import java.util.regex.Pattern;

/** Ends its JVM with System.exit(3), unless the input crash is false. */
public final class Crash implements Function<String, String> {
    private static final Pattern SPARED = Pattern.compile("\"crash\"\\s*:\\s*false");

    @Override
    public String apply(String request) {
        if (!SPARED.matcher(request).find()) {
            System.exit(3);
        }
        return "{\"output\":{\"survived\":true}}";
    }
}
