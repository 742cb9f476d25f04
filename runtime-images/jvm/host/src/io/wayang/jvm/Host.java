package io.wayang.jvm;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayInputStream;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.MalformedURLException;
import java.net.URL;
import java.net.URLClassLoader;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Function;

/**
 * The JVM side of the runtime host's jar/maven strategy: one JVM per host worker, started by
 * wayang_jvm.py, which keeps serving the node contract in Python. This host loads one plugin
 * class and answers the worker's calls over stdin/stdout ({@link Frames}).
 *
 * <p>Arguments: the plugin's class (a binary name) and the plugin's folder. The plugin is a
 * public class with a public no-argument constructor implementing {@code
 * java.util.function.Function<String, String>}: {@code apply} takes the request JSON {@code
 * {"inputs": {...}, "properties": {...}}} and returns the answer JSON, {@code {"output": ...}} or
 * {@code {"error": {...}}} (the wasm ABI, docs/artifacts.md). Function is a JDK type, so the
 * plugin needs no host library and sees the same interface through its own loader.
 *
 * <p>Protocol: the first frame this host writes says whether the plugin loaded ({@code
 * {"ready":true}} or {@code {"ready":false,"message":...}}); then, for each call, it reads two
 * frames (the deadline in milliseconds, the request) and writes one (the answer). The JVM's
 * stdout carries frames only: the plugin's System.out goes to stderr and its System.in is empty.
 */
public final class Host {
    private Host() {}

    public static void main(String[] args) throws IOException {
        OutputStream protocol = new BufferedOutputStream(new FileOutputStream(FileDescriptor.out));
        InputStream requests = new BufferedInputStream(new FileInputStream(FileDescriptor.in));
        System.setOut(System.err);
        System.setIn(new ByteArrayInputStream(new byte[0]));
        Frames frames = new Frames(requests, protocol);
        if (args.length != 2) {
            frames.write(notReady("usage: io.wayang.jvm.Host <plugin class> <plugin folder>"));
            System.exit(2);
        }
        Plugin plugin;
        try {
            plugin = Plugin.load(args[0], Path.of(args[1]));
        } catch (LoadError error) {
            frames.write(notReady(error.getMessage()));
            System.exit(1);
            return;
        }
        frames.write("{\"ready\":true}");
        while (true) {
            String deadline = frames.read();
            String request = deadline == null ? null : frames.read();
            if (request == null) {
                break;
            }
            frames.write(plugin.call(request, Long.parseLong(deadline)));
        }
        // the worker closed the pipe: end, even if the plugin left non-daemon threads running
        System.exit(0);
    }

    private static String notReady(String message) {
        return "{\"ready\":false,\"message\":" + Json.quote(message) + "}";
    }

    /** Why the plugin cannot be loaded: the host stays unready with this message. */
    static final class LoadError extends Exception {
        private static final long serialVersionUID = 1L;

        LoadError(String message) {
            super(message);
        }
    }

    /** One plugin instance in its own class loader. */
    static final class Plugin {
        private final Function<String, String> function;
        private final ClassLoader loader;
        private final String name;

        private Plugin(Function<String, String> function, ClassLoader loader, String name) {
            this.function = function;
            this.loader = loader;
            this.name = name;
        }

        /**
         * The plugin's class from its jar (and the jars of its lib/ folder) in a loader whose
         * parent is the platform loader: the plugin sees the JDK, never this host's classes nor
         * anything else on the JVM's class path.
         */
        static Plugin load(String className, Path folder) throws LoadError {
            URLClassLoader loader =
                    new URLClassLoader(
                            "wayang-plugin",
                            classPath(folder),
                            ClassLoader.getPlatformClassLoader());
            Thread current = Thread.currentThread();
            ClassLoader before = current.getContextClassLoader();
            current.setContextClassLoader(loader);
            try {
                Class<?> type = Class.forName(className, true, loader);
                if (!Function.class.isAssignableFrom(type)) {
                    throw new LoadError(
                            className
                                    + " does not implement java.util.function.Function<String,"
                                    + " String>");
                }
                @SuppressWarnings("unchecked")
                Function<String, String> function =
                        (Function<String, String>) type.getConstructor().newInstance();
                return new Plugin(function, loader, className);
            } catch (ClassNotFoundException error) {
                throw new LoadError("the class " + className + " is not in the plugin's jar");
            } catch (NoSuchMethodException | IllegalAccessException error) {
                throw new LoadError(
                        className + " has no public no-argument constructor (or is not public)");
            } catch (java.lang.reflect.InvocationTargetException error) {
                throw new LoadError(
                        "the constructor of " + className + " threw " + error.getCause());
            } catch (ReflectiveOperationException | LinkageError error) {
                throw new LoadError("the class " + className + " cannot be loaded: " + error);
            } finally {
                current.setContextClassLoader(before);
            }
        }

        /**
         * The jar the fetcher kept whole ({@code artifact.jar}), else the folder itself when the
         * fetcher unpacked the jar there (it unpacks every zip artifact); then lib/*.jar, sorted.
         */
        private static URL[] classPath(Path folder) throws LoadError {
            List<URL> urls = new ArrayList<>();
            Path jar = folder.resolve("artifact.jar");
            try {
                if (Files.isRegularFile(jar)) {
                    urls.add(jar.toUri().toURL());
                } else if (Files.isRegularFile(folder.resolve("META-INF/MANIFEST.MF"))) {
                    urls.add(folder.toUri().toURL());
                } else {
                    throw new LoadError(
                            "no plugin jar: neither " + jar + " nor an unpacked jar in " + folder);
                }
                Path lib = folder.resolve("lib");
                if (Files.isDirectory(lib)) {
                    List<Path> jars = new ArrayList<>();
                    try (DirectoryStream<Path> found = Files.newDirectoryStream(lib, "*.jar")) {
                        found.forEach(jars::add);
                    }
                    jars.sort(null);
                    for (Path dependency : jars) {
                        urls.add(dependency.toUri().toURL());
                    }
                }
            } catch (MalformedURLException error) {
                throw new LoadError("the plugin's class path cannot be named: " + error);
            } catch (IOException error) {
                throw new LoadError("the plugin's lib folder cannot be read: " + error);
            }
            return urls.toArray(new URL[0]);
        }

        /**
         * One call on a thread of its own, with the plugin's loader as its context loader. Past
         * the deadline the thread is interrupted and the answer is a Timeout; its details say
         * whether the thread stopped within a grace period (a plugin that ignores interrupts
         * keeps running, so the worker ends this JVM and the host starts another).
         */
        String call(String request, long deadlineMs) {
            FutureTask<String> task = new FutureTask<>(() -> function.apply(request));
            Thread thread = new Thread(task, "wayang-call");
            thread.setDaemon(true);
            thread.setContextClassLoader(loader);
            thread.start();
            try {
                String answer = task.get(deadlineMs, TimeUnit.MILLISECONDS);
                if (answer == null) {
                    return Json.error(
                            "ToolError", name + ".apply returned null", false, "{}");
                }
                return answer;
            } catch (TimeoutException late) {
                thread.interrupt();
                boolean stopped = joined(thread, Math.max(10, deadlineMs / 20));
                return Json.error(
                        "Timeout",
                        "the plugin ran past its " + deadlineMs + " ms deadline"
                                + (stopped ? "" : " and did not stop when interrupted"),
                        true,
                        "{\"deadlineMs\":" + deadlineMs + ",\"stopped\":" + stopped + "}");
            } catch (ExecutionException failed) {
                Throwable cause = failed.getCause();
                cause.printStackTrace();
                return Json.error(
                        "ToolError",
                        "the plugin threw " + cause,
                        false,
                        "{\"javaException\":" + Json.quote(cause.getClass().getName()) + "}");
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
                return Json.error("ToolError", "the JVM host was interrupted", true, "{}");
            }
        }

        private static boolean joined(Thread thread, long millis) {
            try {
                thread.join(millis);
            } catch (InterruptedException interrupted) {
                Thread.currentThread().interrupt();
            }
            return !thread.isAlive();
        }
    }
}
