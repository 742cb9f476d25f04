package io.wayang.samples.odd;

import java.io.IOException;
import java.util.function.Function;

/**
 * Misbehaves as its text input says: "throw" throws, "null" returns null, "not-json" and
 * "neither" return answers that are no answer, "print" writes to System.out and reads System.in
 * (which must not touch the host's protocol) and then answers what it read.
 */
public final class Odd implements Function<String, String> {
    @Override
    public String apply(String request) {
        if (request.contains("\"throw\"")) {
            throw new IllegalStateException("odd on purpose");
        }
        if (request.contains("\"null\"")) {
            return null;
        }
        if (request.contains("\"not-json\"")) {
            return "this is not JSON";
        }
        if (request.contains("\"neither\"")) {
            return "{\"result\":1}";
        }
        System.out.println("42\n{\"output\":\"forged by System.out\"}");
        int read;
        try {
            read = System.in.read();
        } catch (IOException error) {
            read = -2;
        }
        return "{\"output\":{\"read\":" + read + "}}";
    }
}
