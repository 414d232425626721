-- wrk script: every request carries the next line of a file in one header, so no line repeats
-- until the file is used up (then it starts over; the scripts count repeats from portcullis's
-- metrics). Thread i of n takes lines i, i+n, i+2n, ...
--   ROTATE_FILE=lines.txt ROTATE_HEADER=authorization ROTATE_PREFIX='Bearer ' wrk -s bench/rotate.lua ...
-- (ROTATE_THREADS must equal wrk's -t; default 2.)
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
end

function init(args)
  local file = os.getenv("ROTATE_FILE")
  header = os.getenv("ROTATE_HEADER") or "authorization"
  prefix = os.getenv("ROTATE_PREFIX") or ""
  lines = {}
  local i = 0
  for line in io.lines(file) do
    if i % (tonumber(os.getenv("ROTATE_THREADS")) or 2) == id then
      table.insert(lines, line)
    end
    i = i + 1
  end
  pos = 0
  headers = {}
  for k, v in pairs(wrk.headers) do headers[k] = v end
end

function request()
  pos = pos % #lines + 1
  headers[header] = prefix .. lines[pos]
  return wrk.format(nil, nil, headers)
end
