import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The process's own figures in the names Prometheus client libraries use (`process_*`), read from
/// /proc at each scrape. Nothing is shown where /proc cannot be read.
enum ProcessMetrics {
    static func render() -> String {
        guard let figures = read() else { return "" }
        var text = ""
        func family(_ name: String, _ type: String, _ help: String, _ value: Double) {
            text += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n\(name) \(format(value))\n"
        }
        family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.", figures.cpuSeconds)
        family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.", figures.residentBytes)
        family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", figures.virtualBytes)
        family("process_open_fds", "gauge", "Number of open file descriptors.", figures.openFDs)
        family("process_max_fds", "gauge", "Maximum number of open file descriptors.", figures.maxFDs)
        family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", figures.startTime)
        return text
    }

    struct Figures {
        var cpuSeconds: Double
        var residentBytes: Double
        var virtualBytes: Double
        var openFDs: Double
        var maxFDs: Double
        var startTime: Double
    }

    static func read() -> Figures? {
        guard let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // The fields after the command name (which may hold spaces), from field 3 (state) on.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        func field(_ number: Int) -> Double { fields.count > number - 3 ? Double(fields[number - 3]) ?? 0 : 0 }
        let ticks = Double(sysconf(Int32(_SC_CLK_TCK)))
        let page = Double(sysconf(Int32(_SC_PAGESIZE)))
        guard ticks > 0 else { return nil }
        var limit = rlimit()
        let maxFDs = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 ? Double(limit.rlim_cur) : 0
        let openFDs = Double(((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).count)
        return Figures(cpuSeconds: (field(14) + field(15)) / ticks, residentBytes: field(24) * page, virtualBytes: field(23),
                       openFDs: openFDs, maxFDs: maxFDs, startTime: bootTime() + field(22) / ticks)
    }

    /// When the machine booted (`btime` of /proc/stat), seconds since the epoch.
    static func bootTime() -> Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return 0 }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces)) ?? 0
        }
        return 0
    }

    static func format(_ value: Double) -> String {
        value == value.rounded() && abs(value) < 1e15 ? String(Int64(value)) : String(value)
    }
}
