package io.wayang.samples.peek;

import java.util.function.Function;

/**
 * Says which classes it can load, through its own class loader and through its thread's context
 * class loader: the echo sample's class and the JVM host's must stay invisible (another plugin,
 * the host), while the JDK's platform modules (java.sql) must be visible.
 */
public final class Peek implements Function<String, String> {
    private static final String[] CLASSES = {
        "io.wayang.samples.echo.Echo", "io.wayang.jvm.Host", "java.sql.Connection"
    };

    @Override
    public String apply(String request) {
        ClassLoader own = Peek.class.getClassLoader();
        ClassLoader context = Thread.currentThread().getContextClassLoader();
        StringBuilder seen = new StringBuilder("{\"output\":{");
        for (String name : CLASSES) {
            seen.append('"').append(name).append("\":{\"own\":").append(visible(name, own))
                    .append(",\"context\":").append(visible(name, context)).append("},");
        }
        return seen.append("\"contextIsOwn\":").append(context == own)
                .append(",\"classPath\":\"")
                .append(System.getProperty("java.class.path").replace("\\", "\\\\"))
                .append("\"}}").toString();
    }

    private static boolean visible(String name, ClassLoader loader) {
        try {
            Class.forName(name, false, loader);
            return true;
        } catch (ClassNotFoundException missing) {
            return false;
        }
    }
}
