package io.wayang.samples.fail;

import java.util.function.Function;

/**
 * Answers a typed error (the ABI's {"error": ...}): a retryable NetworkError with its reason in
 * the details, as the Python failing sample raises it with errorType NetworkError.
 */
public final class Fail implements Function<String, String> {
    @Override
    public String apply(String request) {
        return "{\"error\":{\"type\":\"NetworkError\","
                + "\"message\":\"failing on purpose as NetworkError: quota\","
                + "\"retryable\":true,\"suggestedAction\":\"retry\","
                + "\"details\":{\"reason\":\"quota\"}}}";
    }
}
