package io.wayang.samples.echo;

import java.util.function.Function;

/**
 * The JVM echo sample: answers {"output": <the request>}, the request being the host's {"inputs":
 * ..., "properties": ...}, as the wasm echo does, so the same conformance tests hold for both.
 */
public final class Echo implements Function<String, String> {
    @Override
    public String apply(String request) {
        return "{\"output\":" + request + "}";
    }
}
