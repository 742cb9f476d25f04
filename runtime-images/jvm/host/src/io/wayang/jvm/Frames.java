package io.wayang.jvm;

import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;

/**
 * The protocol between the Python worker (wayang_jvm.py) and this host, over the JVM's stdin and
 * stdout: a frame is its length in bytes as a decimal line ({@code "123\n"}), then that many bytes
 * of UTF-8. A length, not a delimiter, because the plugin's JSON may hold any character, newlines
 * included.
 */
final class Frames {
    /** A length line longer than this is not a frame (a corrupt stream, not a big request). */
    private static final int MAX_DIGITS = 10;

    private final InputStream in;
    private final OutputStream out;

    Frames(InputStream in, OutputStream out) {
        this.in = in;
        this.out = out;
    }

    /** The next frame's text, or null when the worker closed the stream between frames. */
    String read() throws IOException {
        ByteArrayOutputStream digits = new ByteArrayOutputStream();
        int next;
        while ((next = in.read()) != '\n') {
            if (next == -1) {
                if (digits.size() == 0) {
                    return null;
                }
                throw new EOFException("the stream ended inside a frame's length");
            }
            if (next < '0' || next > '9' || digits.size() == MAX_DIGITS) {
                throw new IOException("a frame's length is not a decimal line");
            }
            digits.write(next);
        }
        if (digits.size() == 0) {
            throw new IOException("a frame's length is empty");
        }
        long length = Long.parseLong(digits.toString(StandardCharsets.US_ASCII));
        if (length > Integer.MAX_VALUE) {
            throw new IOException("a frame of " + length + " bytes is too long");
        }
        byte[] body = in.readNBytes((int) length);
        if (body.length != length) {
            throw new EOFException("the stream ended inside a frame");
        }
        return new String(body, StandardCharsets.UTF_8);
    }

    void write(String text) throws IOException {
        byte[] body = text.getBytes(StandardCharsets.UTF_8);
        out.write((body.length + "\n").getBytes(StandardCharsets.US_ASCII));
        out.write(body);
        out.flush();
    }
}
